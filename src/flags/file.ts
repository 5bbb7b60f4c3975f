/**
 * The flags file (`config/feature_flags.json`, the seed's format): an object keyed by flag
 * name. Strategy names are accepted in the seed's lower case or in upper case. Optional keys
 * beyond the seed: `whitelist` ({ "symbols": ["BTCZAR"] } or [{ "attribute", "values" }]),
 * `gradual` ({ start_percentage, target_percentage, duration_seconds, start_at? }) and
 * `stickiness`. A file with any error is rejected whole, listing every problem.
 */
import { UserError, UserErrors } from '../errors.js';
import { validateName } from '../validation.js';
import type { FlagDefinition, GradualSchedule, WhitelistEntry } from './engine.js';
import {
  normalizeAttribute,
  parseStrategy,
  validateDescription,
  validateDuration,
  validatePercentage,
  validateStickiness,
  validateWhitelistValue,
} from './validation.js';

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

function fileError(flag: string, message: string): UserError {
  return new UserError('INVALID_CONFIG_FILE', `Flags file, flag "${flag}": ${message}`, flag);
}

function readNumber(obj: Json, keys: string[]): number | undefined {
  for (const key of keys) {
    const v = obj[key];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'number') throw new UserError('INVALID_CONFIG_FILE', `${key} must be a number`);
    return v;
  }
  return undefined;
}

function readWhitelist(raw: unknown): WhitelistEntry[] {
  const entries = new Map<string, Set<string>>();
  const add = (attribute: string, values: unknown) => {
    if (!Array.isArray(values)) throw new UserError('INVALID_CONFIG_FILE', `whitelist values for "${attribute}" must be a list`);
    const attr = normalizeAttribute(attribute);
    const set = entries.get(attr) ?? new Set<string>();
    for (const v of values) set.add(validateWhitelistValue(String(v)));
    entries.set(attr, set);
  };
  if (Array.isArray(raw)) {
    for (const item of raw) {
      if (!isObject(item) || typeof item.attribute !== 'string') {
        throw new UserError('INVALID_CONFIG_FILE', 'whitelist entries must look like { "attribute": "...", "values": [...] }');
      }
      add(item.attribute, item.values);
    }
  } else if (isObject(raw)) {
    for (const [attribute, values] of Object.entries(raw)) add(attribute, values);
  } else if (raw !== undefined && raw !== null) {
    throw new UserError('INVALID_CONFIG_FILE', 'whitelist must be an object or a list');
  }
  return [...entries].map(([attribute, values]) => ({ attribute, values: [...values] }));
}

/** Runs one check; a UserError it throws is noted in `problems` and the value is undefined. */
type Attempt = <T>(check: () => T) => T | undefined;

function attemptInto(problems: string[]): Attempt {
  return (check) => {
    try {
      return check();
    } catch (error) {
      if (!(error instanceof UserError)) throw error;
      problems.push(error.message);
      return undefined;
    }
  };
}

function readGradual(raw: unknown, now: number, previousStartAt: number | null, attempt: Attempt): GradualSchedule | null | undefined {
  if (raw === undefined || raw === null) return null;
  if (!isObject(raw)) return attempt(() => {
    throw new UserError('INVALID_CONFIG_FILE', 'gradual must be an object');
  });
  const start = attempt(() => readNumber(raw, ['start_percentage', 'startPercentage']) ?? 0);
  const target = attempt(() => readNumber(raw, ['target_percentage', 'targetPercentage']) ?? missing('gradual.target_percentage'));
  const duration = attempt(() => readNumber(raw, ['duration_seconds', 'durationSeconds']) ?? missing('gradual.duration_seconds'));
  const startAtRaw = raw.start_at ?? raw.startAt;
  // Without start_at a schedule starts when first imported; re-applying the file keeps that start.
  const startAt = attempt(() => {
    if (startAtRaw === undefined || startAtRaw === null) return previousStartAt ?? now;
    const at = typeof startAtRaw === 'string' ? Date.parse(startAtRaw) : Number.NaN;
    if (Number.isNaN(at)) throw new UserError('INVALID_CONFIG_FILE', 'gradual.start_at must be an ISO-8601 date-time');
    return at;
  });
  const startPercentage = start === undefined ? undefined : attempt(() => validatePercentage(start, 'gradual.start_percentage'));
  const targetPercentage = target === undefined ? undefined : attempt(() => validatePercentage(target, 'gradual.target_percentage'));
  const durationSeconds = duration === undefined ? undefined : attempt(() => validateDuration(duration, 'gradual.duration_seconds'));
  if (startPercentage === undefined || targetPercentage === undefined || durationSeconds === undefined || startAt === undefined) return undefined;
  return { startPercentage, targetPercentage, startAt, durationSeconds };
}

function missing(what: string): never {
  throw new UserError('INVALID_CONFIG_FILE', `${what} is required`);
}

/** The flag names (keys) of a flags file's text; none when it is not a JSON object (parsing says why). */
export function flagNamesInFile(text: string): string[] {
  try {
    const raw: unknown = JSON.parse(text);
    return isObject(raw) ? Object.keys(raw).map((key) => key.trim()) : []; // as validateName trims
  } catch {
    return [];
  }
}

/**
 * Parses the file's text into flag definitions stamped with `now`; throws UserErrors.
 * `existing` lets a re-applied file keep the start of a running schedule that has no start_at.
 */
export function parseFlagsFile(
  text: string,
  now: number,
  existing: (name: string) => FlagDefinition | null = () => null,
): FlagDefinition[] {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new UserError('INVALID_CONFIG_FILE', `Flags file is not valid JSON: ${(error as Error).message}`);
  }
  if (!isObject(raw)) throw new UserError('INVALID_CONFIG_FILE', 'Flags file must be a JSON object keyed by flag name');

  const flags: FlagDefinition[] = [];
  const problems: UserError[] = [];
  for (const [key, value] of Object.entries(raw)) {
    // Every problem of a flag is reported, not only its first (each becomes one error).
    const found: string[] = [];
    const attempt = attemptInto(found);
    const name = attempt(() => validateName(key, 'name', 'Flag name'));
    if (!isObject(value)) {
      found.push('must be an object');
    } else {
      attempt(() => {
        if (value.enabled !== undefined && typeof value.enabled !== 'boolean') throw new UserError('INVALID_CONFIG_FILE', 'enabled must be true or false');
      });
      const strategy = attempt(() => (typeof value.strategy === 'string' ? parseStrategy(value.strategy) : missing('strategy')));
      const gradual = readGradual(value.gradual, now, name === undefined ? null : (existing(name)?.gradual?.startAt ?? null), attempt);
      if (strategy === 'GRADUAL' && gradual === null) found.push('a gradual flag needs a "gradual" schedule');
      const description = attempt(() => validateDescription(typeof value.description === 'string' ? value.description : ''));
      const percentage = attempt(() => validatePercentage(readNumber(value, ['percentage']) ?? 0));
      const stickiness = attempt(() => validateStickiness(typeof value.stickiness === 'string' ? value.stickiness : 'default'));
      const whitelist = attempt(() => readWhitelist(value.whitelist));
      if (found.length === 0) {
        flags.push({
          name: name!, description: description!, enabled: value.enabled === true, strategy: strategy!, percentage: percentage!,
          stickiness: stickiness!, whitelist: whitelist!, gradual: gradual ?? null, createdAt: now, updatedAt: now,
        });
      }
    }
    for (const message of found) problems.push(fileError(key, message));
  }
  if (problems.length > 0) throw new UserErrors(problems);
  return flags;
}

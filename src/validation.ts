/**
 * Edge validation shared by every domain: names of flags, breakers and modules follow one
 * rule so they can be used safely in URLs, logs and metric labels.
 */
import { quoteValue, UserError } from './errors.js';

export const MAX_NAME_LENGTH = 100;
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:-]*$/;

export function validateName(value: string, field = 'name', what = 'Name'): string {
  const name = value.trim();
  if (name.length === 0) throw new UserError('INVALID_NAME', `${what} must not be empty`, field);
  if (name.length > MAX_NAME_LENGTH) {
    throw new UserError('INVALID_NAME', `${what} must be at most ${MAX_NAME_LENGTH} characters (got ${name.length})`, field);
  }
  if (!NAME_PATTERN.test(name)) {
    throw new UserError(
      'INVALID_NAME',
      `${what} ${quoteValue(name)} may only contain letters, digits, "_", ".", ":" and "-", and must start with a letter or digit`,
      field,
    );
  }
  return name;
}

export function validateText(value: string, field: string, max: number): string {
  if (value.length > max) throw new UserError('INVALID_ARGUMENT', `${field} must be at most ${max} characters`, field);
  return value;
}

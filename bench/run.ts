/**
 * `npm run bench [-- name ...]`: runs the benchmarks under bench/ (all, or the named ones), one
 * child process each, prints a table and rewrites bench/RESULTS.md.
 *
 * First the project is compiled with its own tsconfig (support/build.ts) and every benchmark
 * runs as plain JavaScript, as `npm start` runs Helios (`--source` runs the TypeScript through
 * tsx instead, for a quick look while editing). Each benchmark runs in a fresh process (this
 * file again, with `--child <name>` and --expose-gc) so one benchmark's JIT state, heap and
 * leftover handles never colour the next, and a crash or hang costs one section, not the run. Sections of benchmarks not run this time
 * are kept in RESULTS.md from the previous run (with their own date); the machine-readable
 * copy that makes that possible sits in a comment at the end of the file.
 *
 * Nothing here runs in CI: vitest only collects test/**\/*.test.ts and no test imports bench/.
 */
import { fork } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchReport, BenchRow } from './report.js';
import { buildForBench, projectRoot } from './support/build.js';

type Loader = () => Promise<{ default: () => Promise<BenchReport> }>;

/** Known benchmarks in the order they run; any other bench/*.bench.ts is appended. */
const BENCHES: Array<{ name: string; load: Loader }> = [
  { name: 'flags', load: () => import('./flags.bench.js') },
  { name: 'breakers', load: () => import('./breakers.bench.js') },
  { name: 'http', load: () => import('./http.bench.js') },
  { name: 'fanout', load: () => import('./fanout.bench.js') },
  { name: 'mutations', load: () => import('./mutations.bench.js') },
  { name: 'invoke', load: () => import('./invoke.bench.js') },
  { name: 'swap', load: () => import('./swap.bench.js') },
  { name: 'lifecycle', load: () => import('./lifecycle.bench.js') },
  { name: 'rollout', load: () => import('./rollout.bench.js') },
];

const BENCH_DIR = fileURLToPath(new URL('.', import.meta.url));
const RESULTS_FILE = path.join(projectRoot(), 'bench', 'RESULTS.md');
const SELF = fileURLToPath(import.meta.url);
/** A benchmark that takes longer than this is stopped and reported as failed. */
const BENCH_TIMEOUT_MS = 300_000;
const DATA_MARK = 'bench-data';

interface Machine {
  cpu: string;
  cores: number;
  memoryGb: number;
  node: string;
  os: string;
}

interface Section {
  name: string;
  /** ISO date-time the section was measured. */
  at: string;
  seconds: number;
  machine: Machine;
  /** How the code ran (compiled or through tsx). */
  mode: string;
  /** 1-minute load average when the section started: other work on the machine skews figures. */
  loadBefore: number;
  report: BenchReport | null;
  error: string | null;
}

function machine(): Machine {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    memoryGb: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    node: process.version,
    os: `${os.platform()} ${os.release()} ${os.arch()}`,
  };
}

function allBenches(): Array<{ name: string; load: Loader }> {
  const list = [...BENCHES];
  for (const file of readdirSync(BENCH_DIR).sort()) {
    const match = /^(.+)\.bench\.[jt]s$/.exec(file);
    if (!match || list.some((b) => b.name === match[1])) continue;
    const url = new URL(`./${file}`, import.meta.url).href;
    list.push({ name: match[1]!, load: () => import(url) as ReturnType<Loader> });
  }
  return list;
}

// ---- child: run one benchmark and hand its report back ----

async function runChild(name: string): Promise<void> {
  const bench = allBenches().find((b) => b.name === name);
  if (!bench) throw new Error(`unknown benchmark ${name}`);
  const mod = await bench.load();
  const report = await mod.default();
  await new Promise<void>((resolve, reject) => {
    process.send!({ type: 'report', report }, (error: Error | null) => (error ? reject(error) : resolve()));
  });
  // Benchmarks close what they open; exiting here also ends anything a failed one left behind.
  process.exit(0);
}

// ---- parent ----

/** How the children run: compiled JavaScript on plain Node, or this very file through tsx. */
interface ChildMode {
  script: string;
  execArgv: string[];
  label: string;
}

function runInChild(name: string, mode: ChildMode): Promise<{ report: BenchReport | null; error: string | null; seconds: number }> {
  const started = performance.now();
  return new Promise((resolve) => {
    const child = fork(mode.script, ['--child', name], {
      execArgv: [...mode.execArgv, '--expose-gc'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    let report: BenchReport | null = null;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
    }, BENCH_TIMEOUT_MS);
    child.on('message', (raw: unknown) => {
      const message = raw as { type?: string; report?: BenchReport };
      if (message.type === 'report' && message.report) report = message.report;
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      const seconds = Math.round((performance.now() - started) / 100) / 10;
      if (report) resolve({ report, error: null, seconds });
      else {
        const why = signal === 'SIGKILL' ? `stopped after ${BENCH_TIMEOUT_MS / 1000} s` : `exited with ${code ?? signal} before reporting`;
        resolve({ report: null, error: why, seconds });
      }
    });
  });
}

function fmtNumber(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  const abs = Math.abs(n);
  const digits = abs >= 1000 ? 0 : abs >= 100 ? 1 : abs >= 1 ? 2 : 4;
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

function fmtRatio(n: number): string {
  if (!Number.isFinite(n)) return 'n/a';
  return `${n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n >= 0.01 ? n.toFixed(3) : n.toPrecision(2)}x`;
}

function goalCell(row: BenchRow): string {
  if (!row.goal) return '';
  return `${row.goal}: ${row.met === undefined ? '?' : row.met ? 'met' : '**MISSED**'}`;
}

function printSection(section: Section, withNotes = false): void {
  const header = `== ${section.name} (${section.seconds} s)`;
  console.log(`\n${header}`);
  if (!section.report) {
    console.log(`   FAILED: ${section.error}`);
    return;
  }
  const rows = section.report.rows.map((r) => [r.case, `${fmtNumber(r.value)} ${r.unit}`, `${fmtRatio(r.ratio)} vs ${r.baseline}`, goalCell(r).replace(/\*\*/g, '')]);
  const widths = [0, 1, 2].map((i) => Math.min(70, Math.max(...rows.map((r) => r[i]!.length))));
  for (const r of rows) {
    console.log(`   ${r[0]!.padEnd(widths[0]!)}  ${r[1]!.padStart(widths[1]!)}  ${r[2]!.padEnd(widths[2]!)}  ${r[3]}`);
  }
  if (withNotes) for (const note of section.report.notes ?? []) console.log(`   - ${note}`);
}

function escapeCell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

function markdownSection(section: Section): string {
  const lines: string[] = [`## ${section.name}`, ''];
  const m = section.machine;
  lines.push(
    `Measured ${section.at.slice(0, 16).replace('T', ' ')} UTC in ${section.seconds} s (${m.cpu}, ${m.cores} cores, Node ${m.node}; ${section.mode}; load average ${section.loadBefore} at the start).`,
    '',
  );
  if (!section.report) {
    lines.push(`**Failed:** ${section.error}`, '');
    return lines.join('\n');
  }
  lines.push('| case | value | ratio | baseline (same run) | goal |', '| --- | ---: | ---: | --- | --- |');
  for (const r of section.report.rows) {
    lines.push(`| ${escapeCell(r.case)} | ${fmtNumber(r.value)} ${escapeCell(r.unit)} | ${fmtRatio(r.ratio)} | ${escapeCell(r.baseline)} | ${escapeCell(goalCell(r))} |`);
  }
  if (section.report.notes?.length) {
    lines.push('');
    for (const note of section.report.notes) lines.push(`- ${note}`);
  }
  lines.push('');
  return lines.join('\n');
}

function readPrevious(): Section[] {
  if (!existsSync(RESULTS_FILE)) return [];
  const text = readFileSync(RESULTS_FILE, 'utf8');
  const match = new RegExp(`<!-- ${DATA_MARK}\\n([\\s\\S]*?)\\n-->`).exec(text);
  if (!match) return [];
  try {
    return JSON.parse(match[1]!.replace(/-\\->/g, '-->')) as Section[];
  } catch {
    return [];
  }
}

/** Hand-written analysis between these markers survives a rewrite. */
const ANALYSIS_START = '<!-- analysis:start -->';
const ANALYSIS_END = '<!-- analysis:end -->';

function readAnalysis(): string {
  if (!existsSync(RESULTS_FILE)) return '';
  const text = readFileSync(RESULTS_FILE, 'utf8');
  const start = text.indexOf(ANALYSIS_START);
  const end = text.indexOf(ANALYSIS_END);
  return start >= 0 && end > start ? text.slice(start + ANALYSIS_START.length, end).trim() : '';
}

function writeResults(sections: Section[], order: string[]): void {
  const sorted = [...sections].sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name));
  const m = machine();
  const goals = sorted.flatMap((s) => (s.report?.rows ?? []).filter((r) => r.goal).map((r) => ({ s: s.name, r })));
  const missed = goals.filter((g) => g.r.met === false);
  const failed = sorted.filter((s) => !s.report);
  const lines: string[] = [
    '# Benchmark results',
    '',
    'Written by `npm run bench` (`tsx bench/run.ts`); `npm run bench -- <name> ...` reruns only the named',
    'benchmarks and keeps the other sections. Every ratio is value / baseline, both measured in the same',
    'run of the same section. No benchmark runs in CI.',
    '',
    `- Machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGb} GB memory, ${m.os}`,
    `- Node: ${m.node}`,
    `- Written: ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC`,
    `- Goals: ${goals.length - missed.length} of ${goals.length} met${missed.length ? `; missed: ${missed.map((g) => `${g.s} / ${g.r.case}`).join('; ')}` : ''}${failed.length ? `; sections failed: ${failed.map((s) => s.name).join(', ')}` : ''}`,
    '',
    ANALYSIS_START,
    readAnalysis() || '(No analysis yet.)',
    ANALYSIS_END,
    '',
  ];
  for (const section of sorted) lines.push(markdownSection(section));
  const data = JSON.stringify(sorted, null, 0).replace(/-->/g, '-\\->');
  lines.push(`<!-- ${DATA_MARK}`, data, '-->', '');
  writeFileSync(RESULTS_FILE, lines.join('\n'));
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const childIndex = args.indexOf('--child');
  if (childIndex >= 0) {
    await runChild(args[childIndex + 1] ?? '');
    return;
  }
  const noWrite = args.includes('--no-write');
  const fromSource = args.includes('--source');
  const names = args.filter((a) => !a.startsWith('--'));
  const benches = allBenches();
  const unknown = names.filter((n) => !benches.some((b) => b.name === n));
  if (unknown.length > 0) {
    console.error(`unknown benchmark(s): ${unknown.join(', ')}; known: ${benches.map((b) => b.name).join(', ')}`);
    process.exit(2);
  }
  const chosen = names.length > 0 ? benches.filter((b) => names.includes(b.name)) : benches;
  // The checkout itself (the compiled copy lives elsewhere): for benchmarks that run `npm start`.
  process.env.HELIOS_BENCH_CHECKOUT = projectRoot();
  const m = machine();
  console.log(`Helios benchmarks on ${m.cpu}, ${m.cores} cores, ${m.memoryGb} GB, Node ${m.node}`);
  console.log(`running: ${chosen.map((b) => b.name).join(', ')}`);
  let mode: ChildMode;
  if (fromSource) {
    mode = { script: SELF, execArgv: process.execArgv, label: 'TypeScript sources through tsx (--source)' };
  } else {
    const started = performance.now();
    const out = buildForBench(projectRoot());
    console.log(`compiled with tsc into ${out} in ${Math.round(performance.now() - started)} ms`);
    mode = { script: path.join(out, 'bench', 'run.js'), execArgv: [], label: 'compiled with tsc (tsconfig.json), plain node, as npm start runs it' };
  }

  const fresh: Section[] = [];
  for (const bench of chosen) {
    console.log(`\n-- ${bench.name} ...`);
    const at = new Date().toISOString();
    const load = os.loadavg()[0] ?? 0;
    const { report, error, seconds } = await runInChild(bench.name, mode);
    const section: Section = { name: bench.name, at, seconds, machine: m, mode: mode.label, loadBefore: Math.round(load * 100) / 100, report, error };
    fresh.push(section);
    printSection(section, true);
  }

  console.log('\n==== summary');
  for (const section of fresh) printSection(section);
  if (!noWrite) {
    const kept = readPrevious().filter((s) => !fresh.some((f) => f.name === s.name) && benches.some((b) => b.name === s.name));
    writeResults([...kept, ...fresh], benches.map((b) => b.name));
    console.log(`\nwrote ${RESULTS_FILE}`);
  }
  const missed = fresh.flatMap((s) => (s.report?.rows ?? []).filter((r) => r.met === false));
  const failed = fresh.filter((s) => !s.report);
  console.log(`goals missed: ${missed.length}; sections failed: ${failed.length}`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});

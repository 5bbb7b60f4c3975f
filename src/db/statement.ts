/**
 * SQL written by hand, once, for the writes that run on every change of a hot mutation
 * (`setFlagPercentage`: the flag's read, its upsert and the audit row). The unit of work runs
 * it on the unit's connection (`uow.query`, `uow.write`), so it joins the unit's transaction as
 * a Kysely query would, without building and compiling the query on every call: a CPU profile
 * showed Kysely's builders and compiler at ~15% of the mutation, and on SQLite the statement
 * runs on its prepared better-sqlite3 statement without a promise per step.
 *
 * Both dialects quote identifiers with double quotes; the text is written with `?` placeholders
 * and PostgreSQL gets them numbered (`$1`, `$2`, ...). Rows come back as each driver returns
 * them, the same values a Kysely query of the same columns returns.
 */
export interface Statement {
  readonly sqlite: string;
  readonly postgres: string;
}

/** A statement from one text (no `?` inside string literals: values are parameters). */
export function statement(text: string): Statement {
  let n = 0;
  return { sqlite: text, postgres: text.replace(/\?/g, () => `$${++n}`) };
}

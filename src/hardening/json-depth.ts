/**
 * A nesting limit for JSON inputs (the `JSON` scalar: a module's `config`, `invokeModule` args,
 * flag evaluation `attributes`, anything else typed JSON).
 *
 * JSON.parse accepts any depth, but much of what follows does not: JSON.stringify, structured
 * clone to a worker and most recursive code overflow the stack somewhere around 10,000 levels
 * (a RangeError that surfaced as INTERNAL_SERVER_ERROR). No Helios input needs more than a few
 * levels, so values deeper than `MAX_JSON_DEPTH` are refused where the scalar is parsed, for
 * HTTP and graphql-ws alike. The measure itself is iterative, so it cannot overflow either.
 *
 * Depth counts containers: `1` and `"a"` are 0, `{}` and `[]` are 1, `{"a":[1]}` is 2.
 */

/** Deepest nesting of objects and arrays accepted in a JSON input. */
export const MAX_JSON_DEPTH = 64;

/**
 * Whether `value` nests objects/arrays deeper than `max`. Stops at the first container past
 * `max`, so a hostile value costs at most what it took to send (and a cyclic in-process value
 * terminates).
 */
export function exceedsJsonDepth(value: unknown, max: number = MAX_JSON_DEPTH): boolean {
  if (value === null || typeof value !== 'object') return false;
  const stack: Array<{ value: object; depth: number }> = [{ value, depth: 1 }];
  for (let next = stack.pop(); next !== undefined; next = stack.pop()) {
    if (next.depth > max) return true;
    const children: unknown[] = Array.isArray(next.value) ? next.value : Object.values(next.value);
    for (const child of children) {
      if (child !== null && typeof child === 'object') stack.push({ value: child, depth: next.depth + 1 });
    }
  }
  return false;
}

/**
 * Bounded texts, one rule for every place that cuts one (module texts at the runtime boundary,
 * stored errors, messages): at most `max` characters, ending with a note of the full length,
 * never splitting a surrogate pair. A clipped text fits in `max`, so clipping it again keeps it.
 * A leaf: imported by worker code and the server alike.
 */
export function clipText(text: string, max: number): string {
  if (text.length <= max) return text;
  const marker = `… (truncated: ${text.length} characters in all)`;
  let end = Math.max(0, max - marker.length);
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return `${text.slice(0, end)}${marker}`;
}

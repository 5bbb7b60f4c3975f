/**
 * Sets `key` in `map`, dropping the map's oldest entry first when it already holds `limit`: the
 * bounded, oldest-out-first caches of query texts, Accept headers, Host headers and prepared
 * statements. Callers set only after a miss, so the key is new.
 */
export function setBounded<K, V>(map: Map<K, V>, key: K, value: V, limit: number): void {
  if (map.size >= limit) map.delete(map.keys().next().value as K);
  map.set(key, value);
}

/**
 * The dependency graph of registered modules, as pure functions over the registrations (a
 * module name -> its record). No I/O, no state: the lifecycle asks, these answer.
 *
 * - A cycle is refused when registered (`findCycle`), a dependency that is not registered when
 *   loading (`dependencyOrder` throws DEPENDENCY_NOT_FOUND).
 * - Load order is topological: every module after its dependencies; unload order is its reverse.
 */
import { quoteValue, UserError } from '../errors.js';
import type { ModuleState } from './states.js';

/** What the graph reads of a registration. */
export interface GraphNode {
  readonly name: string;
  readonly dependencies: readonly string[];
  readonly state: ModuleState;
}

export type ModuleGraph = ReadonlyMap<string, GraphNode>;

/** Registered modules that declare `name` as a dependency, sorted by name. */
export function dependentsOf(graph: ModuleGraph, name: string): string[] {
  return [...graph.values()].filter((r) => r.dependencies.includes(name)).map((r) => r.name).sort((a, b) => a.localeCompare(b));
}

/** The module's dependencies (transitively), in load order; throws on missing ones or cycles. */
export function dependencyOrder(graph: ModuleGraph, name: string): string[] {
  const order: string[] = [];
  const visiting = new Set<string>();
  const done = new Set<string>();
  const visit = (current: string, path: string[]) => {
    if (done.has(current)) return;
    if (visiting.has(current)) {
      throw new UserError('DEPENDENCY_CYCLE', `Dependency cycle: ${[...path, current].join(' -> ')}`, 'name');
    }
    const record = graph.get(current);
    if (!record) {
      throw new UserError('DEPENDENCY_NOT_FOUND', `Module ${quoteValue(path[path.length - 1])} depends on ${quoteValue(current)}, which is not registered`, 'name');
    }
    visiting.add(current);
    for (const dep of record.dependencies) visit(dep, [...path, current]);
    visiting.delete(current);
    done.add(current);
    if (current !== name) order.push(current);
  };
  visit(name, []);
  return order;
}

/** `names` ordered so that every module comes after its (registered) dependencies. */
export function topologicalOrder(graph: ModuleGraph, names: readonly string[]): string[] {
  const wanted = new Set(names);
  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (name: string, stack: Set<string>) => {
    if (seen.has(name) || stack.has(name)) return;
    stack.add(name);
    for (const dep of graph.get(name)?.dependencies ?? []) visit(dep, stack);
    stack.delete(name);
    seen.add(name);
    if (wanted.has(name)) order.push(name);
  };
  for (const name of names) visit(name, new Set());
  return order;
}

/** A cycle that registering `name` with `dependencies` would create, as a path; null when none. */
export function findCycle(graph: ModuleGraph, name: string, dependencies: readonly string[]): string[] | null {
  const search = (current: string, path: string[]): string[] | null => {
    if (current === name) return [...path, current];
    if (path.includes(current)) return null;
    for (const dep of graph.get(current)?.dependencies ?? []) {
      const found = search(dep, [...path, current]);
      if (found) return found;
    }
    return null;
  };
  for (const dep of dependencies) {
    const found = search(dep, [name]);
    if (found) return found;
  }
  return null;
}

/** Loaded (or loading) modules that depend on `name`, directly or through others. */
export function loadedDependentsDeep(graph: ModuleGraph, name: string): string[] {
  const result = new Set<string>();
  const visit = (current: string) => {
    for (const dependent of dependentsOf(graph, current)) {
      const state = graph.get(dependent)!.state;
      if (state === 'UNLOADED' || state === 'FAILED') continue;
      if (!result.has(dependent)) {
        result.add(dependent);
        visit(dependent);
      }
    }
  };
  visit(name);
  return [...result];
}

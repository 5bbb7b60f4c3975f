/** What every resolver receives: the caller's identity and the services. */
import type { Services } from '../app.js';
import type { Caller } from '../auth/authorization.js';

export interface GraphQLContext {
  /** Who is calling, recorded in the audit log: the token's name, or `anonymous`. */
  actor: string;
  caller: Caller;
  services: Services;
}

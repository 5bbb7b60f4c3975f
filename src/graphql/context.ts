/** What every resolver receives: the caller's identity and the services. */
import type { Services } from '../app.js';

export interface GraphQLContext {
  /** Who is calling, recorded in the audit log (the token's name once tokens exist). */
  actor: string;
  services: Services;
}

/** What the auth domain publishes: a token revocation, once it has committed. A leaf file. */
export interface TokenRevokedEvent {
  /** The token's name. */
  name: string;
  actor: string;
  at: number;
}

-- API tokens. The token itself is never stored: only its SHA-256 (hex), which is enough to
-- recognise a presented token and useless for presenting one. A revoked row stays (with
-- revoked_at) so `apiTokens` shows it, until its name is reused by a new token.
CREATE TABLE api_tokens (
  name TEXT PRIMARY KEY,
  role TEXT NOT NULL CHECK (role IN ('VIEWER', 'OPERATOR', 'ADMIN')),
  token_hash TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL,    -- epoch ms
  created_by TEXT NOT NULL,       -- the actor that created it (a token name, 'cli:<user>' or 'system')
  last_used_at INTEGER,           -- epoch ms, refreshed at most once a minute
  revoked_at INTEGER              -- epoch ms; NULL while the token is valid
) STRICT;

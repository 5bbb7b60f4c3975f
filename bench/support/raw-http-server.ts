/**
 * Child-process entry: the physical floor for an HTTP answer. A bare `node:http` server that
 * reads each request body to its end (as any server must) and answers a canned body, chosen by
 * path, with the status and content type given in argv[2]: a JSON object
 * `{ "/path": { "body": "...", "contentType": "..." } }`. No parsing, no routing table, no
 * evaluation: what Node itself costs for the same bytes on the wire. Answers `memory` and `stop`
 * over IPC like the other servers.
 */
import { createServer } from 'node:http';
import { serveFloorRpc } from './floor-server.js';

interface Canned {
  body: string;
  contentType: string;
}

const routes = new Map<string, { body: Buffer; contentType: string }>();
for (const [path, canned] of Object.entries(JSON.parse(process.argv[2] ?? '{}') as Record<string, Canned>)) {
  routes.set(path, { body: Buffer.from(canned.body), contentType: canned.contentType });
}

const server = createServer((req, res) => {
  req.on('data', () => {});
  req.on('end', () => {
    const route = routes.get(req.url ?? '/');
    if (!route) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': route.contentType, 'content-length': route.body.length });
    res.end(route.body);
  });
});
server.listen(0, '127.0.0.1', () => serveFloorRpc(server, ''));

// server.js: starts NocoDB for pipectl's integration tests (scripts/nocodb.sh start). The nocodb
// package has no CLI entry: Noco.init(args, httpServer, expressApp) mounts it on an express app.
// Environment: NC_APP_DIR (the folder holding node_modules), PORT, NC_WORK_DIR (cwd for
// NocoDB's files), and NocoDB's own NC_DB, NC_AUTH_JWT_SECRET, NC_ADMIN_EMAIL/NC_ADMIN_PASSWORD.
'use strict';
const path = require('path');
const { createRequire } = require('module');

const appDir = process.env.NC_APP_DIR;
const port = Number(process.env.PORT);
if (!appDir || !port) {
    console.error('server.js: NC_APP_DIR and PORT must be set');
    process.exit(2);
}
if (process.env.NC_WORK_DIR) process.chdir(process.env.NC_WORK_DIR);
const req = createRequire(path.join(appDir, 'package.json'));
const express = req('express');
const { Noco } = req('nocodb');

(async () => {
    const app = express();
    const server = app.listen(port, '127.0.0.1');
    server.on('error', (e) => {
        console.error(`server.js: cannot listen on 127.0.0.1:${port}: ${e.message}`);
        process.exit(3);
    });
    app.use(await Noco.init({}, server, app));
    console.log(`server.js: NocoDB listening on 127.0.0.1:${port}`);
})().catch((e) => {
    console.error('server.js: NocoDB failed to start:', e && e.stack ? e.stack : e);
    process.exit(1);
});

for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));

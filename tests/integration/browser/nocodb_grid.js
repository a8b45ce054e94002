// nocodb_grid.js: signs in to NocoDB through its web UI in headless Chromium (Debian's
// /usr/bin/chromium driven by playwright-core, installed by scripts/nocodb.sh install), opens the
// grid view of one table, waits until a known cell value is visible and saves a screenshot.
// Used by tests/integration/test_nocodb_browser.sh. Environment:
//   PC_NOCODB_MODULES   node_modules holding playwright-core
//   PC_NOCODB_URL, PC_NOCODB_EMAIL, PC_NOCODB_PASSWORD
//   NC_BASE_ID, NC_TABLE_ID   the grid to open
//   NC_EXPECT, NC_ROW_ID      a cell value that must show, and its row's primary key
//   NC_SHOT             PNG path;   CHROMIUM  browser binary (default /usr/bin/chromium)
// Exit 0 when the value was seen (prints "grid shows: ..." lines), 1 otherwise.
'use strict';
const path = require('path');
const { createRequire } = require('module');

const env = (k) => {
    const v = process.env[k];
    if (!v) {
        console.error(`nocodb_grid.js: ${k} is not set`);
        process.exit(2);
    }
    return v;
};
const req = createRequire(path.join(env('PC_NOCODB_MODULES'), 'noop.js'));
const { chromium } = req('playwright-core');

(async () => {
    const url = env('PC_NOCODB_URL');
    const browser = await chromium.launch({
        executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
        headless: true,
        args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
    });
    let ok = false, shot = false;
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    try {
        page.setDefaultTimeout(60000);
        await page.goto(`${url}/dashboard/#/signin`);
        await page.locator('input[type="email"], input[name="email"]').first().fill(env('PC_NOCODB_EMAIL'));
        await page.locator('input[type="password"]').first().fill(env('PC_NOCODB_PASSWORD'));
        await page.locator('input[type="password"]').first().press('Enter');
        // signed in: the sign-in form goes away
        await page.waitForFunction(() => !location.hash.includes('signin'), null, { timeout: 60000 });
        console.log(`signed in, at ${await page.evaluate(() => location.hash)}`);

        // NocoDB 0.301 paints its grid (cells and the "N records" footer) on a <canvas>: the cell
        // text is not in the DOM. So the check is twofold: the rows the grid fetched hold the
        // value, and the expanded record of that row (a DOM form) shows it in a visible field.
        const want = env('NC_EXPECT');
        let fetched = false;
        page.on('response', async (r) => {
            if (fetched || !/\/api\//.test(r.url())) return;
            try {
                if ((await r.text()).includes(want)) fetched = true;
            } catch (e) { /* bodies of redirects and aborted requests */ }
        });
        const grid = `${url}/dashboard/#/nc/${env('NC_BASE_ID')}/${env('NC_TABLE_ID')}`;
        await page.goto(grid);
        await page.waitForFunction(() => document.querySelector('canvas') !== null);
        for (let i = 0; i < 100 && !fetched; i++) await page.waitForTimeout(100);
        if (!fetched) throw new Error(`the grid's data requests never returned "${want}"`);
        console.log(`grid data holds: ${want}`);
        await page.waitForTimeout(1000); // let the canvas paint before the screenshot
        await page.screenshot({ path: env('NC_SHOT'), fullPage: false });
        shot = true;

        await page.goto(`${grid}?rowId=${env('NC_ROW_ID')}`);
        await page.waitForFunction((v) => [...document.querySelectorAll('input, textarea')]
            .some((e) => e.value === v && e.offsetParent !== null), want, { timeout: 60000 });
        console.log(`grid shows: ${want}`);
        ok = true;
    } catch (e) {
        console.error(`nocodb_grid.js: ${e.message}`);
    } finally {
        // a screenshot either way: on failure it shows what the page held instead
        if (!shot) await page.screenshot({ path: env('NC_SHOT'), fullPage: false });
        console.log(`screenshot: ${env('NC_SHOT')}`);
        await browser.close();
    }
    process.exit(ok ? 0 : 1);
})().catch((e) => {
    console.error('nocodb_grid.js:', e && e.stack ? e.stack : e);
    process.exit(1);
});

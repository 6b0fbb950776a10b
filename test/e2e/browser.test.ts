import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { useClients, useRedis, useRelays } from '../helpers/fixtures';
import { trustedEnv } from '../helpers/load';
import type { RelayProcess } from '../helpers/relay-process';
import { signHs256Token } from '../../service/auth';

// The demo page in a real headless Chromium: two pages on two relay instances of one Redis.

const CHROMIUM = '/usr/bin/chromium';
const WAIT_MS = 20_000;
const ROOM = 'e2e-room';

jest.setTimeout(120_000);

const redisServers = useRedis();
const relays = useRelays();
const clients = useClients();
let browser: Browser | undefined;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `Chromium not found at ${CHROMIUM}: the browser test drives Debian's chromium through playwright-core and downloads no browser. ` +
        'Install it with "sudo apt-get install chromium" (or run .ci/run, which installs it when missing).',
    );
  }
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
    ],
  });
});

afterAll(async () => {
  await browser?.close();
});

interface Cluster {
  a: RelayProcess;
  b: RelayProcess;
  page1: Page;
  page2: Page;
}

/** Everything the pages' Content-Security-Policy blocked: the demo must work within its policy. */
const cspViolations: string[] = [];

afterEach(() => {
  expect(cspViolations.splice(0)).toEqual([]);
});

/** One Redis, relays A and B; page 1 on A, page 2 on B with A as its fallback. Both pages joined ROOM by typing and clicking. */
async function cluster(): Promise<Cluster> {
  if (!browser) throw new Error('Chromium did not start; see the beforeAll failure above.');
  const redis = await redisServers.start();
  // Drain quickly so the switch happens within the test, and let the recovery test publish fast.
  const env = trustedEnv({ REDIS_URL: redis.url, RELAY_DRAIN_WINDOW_MS: '100' });
  // Sequential: a failed start must not leave the other relay starting after the teardown has stopped everything.
  const a = await relays.start({ ...env, RELAY_INSTANCE_ID: 'relay-a' });
  const b = await relays.start({ ...env, RELAY_INSTANCE_ID: 'relay-b' });
  await Promise.all([a.waitHealthy(WAIT_MS), b.waitHealthy(WAIT_MS)]);

  const page1 = await newPage(`${a.httpUrl}/`);
  const page2 = await newPage(`${b.httpUrl}/?urls=${encodeURIComponent(`${b.wsUrl},${a.wsUrl}`)}`);
  await waitForStatus(page1, 'connected to instance relay-a');
  await waitForStatus(page2, 'connected to instance relay-b');
  for (const page of [page1, page2]) {
    await page.fill('#room', ROOM);
    await page.click('#join');
    await page.locator('#rooms', { hasText: ROOM }).waitFor({ timeout: WAIT_MS });
  }
  return { a, b, page1, page2 };
}

async function newPage(url: string): Promise<Page> {
  const context = clients.track(await browser!.newContext());
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('pageerror', (err) => problems.push(err.message));
  page.on('console', (msg) => {
    if (/Content Security Policy/i.test(msg.text())) cspViolations.push(msg.text());
  });
  const res = await page.goto(url, { waitUntil: 'load', timeout: WAIT_MS });
  expect(res?.status()).toBe(200);
  expect(res?.headers()['content-security-policy']).toMatch(/script-src 'self'/);
  expect(problems).toEqual([]);
  return page;
}

async function waitForStatus(page: Page, text: string): Promise<void> {
  await page.locator('#status', { hasText: text }).waitFor({ timeout: WAIT_MS });
}

/** Records every text #status shows from now on, so a short-lived "reconnecting" cannot slip between polls. */
async function recordStatus(page: Page): Promise<void> {
  await page.evaluate(() => {
    const el = document.getElementById('status')!;
    const log: string[] = [];
    (window as unknown as { statusLog: string[] }).statusLog = log;
    new MutationObserver(() => log.push(el.textContent ?? '')).observe(el, { childList: true, characterData: true, subtree: true });
  });
}

async function sendByTyping(page: Page, text: string): Promise<void> {
  await page.fill('#message', text);
  await page.click('#send');
  // The page clears the field once the relay acked the publish, or explains in #notice why it did not.
  await page.waitForFunction(
    () => (document.getElementById('message') as HTMLInputElement).value === '' || document.getElementById('notice')?.textContent !== '',
    undefined,
    { timeout: WAIT_MS },
  );
  expect(await page.textContent('#notice')).toBe('');
}

async function messageTexts(page: Page): Promise<string[]> {
  return page.$$eval('#messages li .text', (els) => els.map((e) => e.textContent ?? ''));
}

/** Publishes from the page's own client (the one the form uses) and waits for the ack. */
async function publishFromPage(page: Page, text: string): Promise<void> {
  await page.evaluate(
    ([room, data]) => (window as unknown as { relayClient: { publish(r: string, d: unknown): Promise<unknown> } }).relayClient.publish(room, data),
    [ROOM, text] as const,
  );
}

describe('demo page in Chromium, two relays, one Redis', () => {
  it('delivers a message typed on page 1 (relay A) to page 2 (relay B), and page 2 fails over to A by itself when B stops', async () => {
    const { b, page1, page2 } = await cluster();
    const page1Connection = await page1.evaluate(
      () => (window as unknown as { relayClient: { welcome: { connectionId: string } } }).relayClient.welcome.connectionId,
    );

    await sendByTyping(page1, 'hello from page 1');
    const first = page2.locator('#messages li', { hasText: 'hello from page 1' });
    await first.waitFor({ timeout: WAIT_MS });
    const firstText = await first.textContent();
    expect(firstText).toContain(`from connection ${page1Connection}`);
    expect(firstText).toContain('relay-b');

    await recordStatus(page2);
    b.signal('SIGTERM');
    await page2.waitForFunction(
      () => (window as unknown as { statusLog: string[] }).statusLog.some((t) => t.includes('reconnecting')),
      undefined,
      { timeout: WAIT_MS },
    );
    await waitForStatus(page2, 'connected to instance relay-a');
    expect(await b.waitExit()).toEqual({ code: 0, signal: null });

    await sendByTyping(page1, 'after the failover');
    await page2.locator('#messages li', { hasText: 'after the failover' }).waitFor({ timeout: WAIT_MS });
    expect(await messageTexts(page2)).toEqual(['hello from page 1', 'after the failover']);
  });

  // Needs message recovery: the relay numbers room messages (seq/epoch) and replays them to a rejoin with `since`.
  it('loses no message sent while page 2 switches from relay B to relay A (message recovery)', async () => {
    const { b, page1, page2 } = await cluster();
    const sent: string[] = [];
    const send = async (text: string): Promise<void> => {
      await publishFromPage(page1, text);
      sent.push(text);
    };

    for (let i = 0; i < 10; i++) await send(`before-${i}`);
    await page2.locator('#messages li', { hasText: 'before-9' }).waitFor({ timeout: WAIT_MS });

    await recordStatus(page2);
    b.signal('SIGTERM');
    // Keep publishing, one acked message at a time, until page 2 is back (bounded in count and time).
    const deadline = Date.now() + WAIT_MS;
    let back = false;
    for (let i = 0; i < 300 && Date.now() < deadline && !back; i++) {
      await send(`during-${i}`);
      back = await page2.evaluate(() => {
        const log = (window as unknown as { statusLog: string[] }).statusLog;
        return log.some((t) => t.includes('reconnecting')) && (document.getElementById('status')?.textContent ?? '').includes('relay-a');
      });
    }
    expect(back).toBe(true);
    for (let i = 0; i < 5; i++) await send(`after-${i}`);
    await page2.locator('#messages li', { hasText: 'after-4' }).waitFor({ timeout: WAIT_MS });

    const received = await messageTexts(page2);
    const missing = sent.filter((t) => !received.includes(t));
    expect(missing).toEqual([]);
    expect(received).toEqual(sent);
    await b.waitExit();
  });
});

describe('demo page with token auth', () => {
  it('connects with a token typed into the page, and shows a forbidden join', async () => {
    if (!browser) throw new Error('Chromium did not start; see the beforeAll failure above.');
    const secret = 'browser-token-secret-0123456789';
    const relay = await relays.start(trustedEnv({ RELAY_TOKEN_SECRET: secret, RELAY_INSTANCE_ID: 'relay-t' }));
    const token = signHs256Token({ sub: 'browser', exp: Math.floor(Date.now() / 1000) + 3600, rooms: { 'demo:*': ['join', 'publish'] } }, secret);
    const page = await newPage(`${relay.httpUrl}/`);
    // Without a token the relay refuses the upgrade and the page keeps retrying.
    await waitForStatus(page, 'reconnecting');
    await page.fill('#token', token);
    await page.click('#use-token');
    await waitForStatus(page, 'connected to instance relay-t');
    await page.fill('#room', 'demo:1');
    await page.click('#join');
    await page.locator('#rooms', { hasText: 'demo:1' }).waitFor({ timeout: WAIT_MS });
    await sendByTyping(page, 'with a token');
    await page.locator('#messages li .text', { hasText: 'with a token' }).waitFor({ timeout: WAIT_MS });
    await page.fill('#room', 'elsewhere');
    await page.click('#join');
    await page.locator('#notice', { hasText: '(forbidden)' }).waitFor({ timeout: WAIT_MS });

    // A token in the address's fragment (never sent to a server) is used from the start.
    const direct = await newPage(`${relay.httpUrl}/#token=${token}`);
    await waitForStatus(direct, 'connected to instance relay-t');
  });
});

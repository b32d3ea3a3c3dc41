// Peer Pressure's service worker: a thin proxy for /stream/<file id>.
// The media element (or img / object) of the page asks /stream/<id> with a Range header; this
// worker asks the page for the bytes over a MessageChannel and streams its answers back. Every
// decision (which bytes, from which chunks, verified, the download's playhead, headers, status)
// is made by the page, in Rust: browser-peer/src/stream.rs. Nothing else is intercepted.
'use strict';

self.addEventListener('install', (event) => event.waitUntil(self.skipWaiting()));
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

// One question to the page; resolves with its answer (a plain object).
function ask(client, msg) {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = (ev) => resolve(ev.data);
    client.postMessage(msg, [channel.port2]);
  });
}

// The page that made the request, else any page of this origin (a tab opening /stream/<id>).
async function pageFor(event) {
  const own = event.clientId && (await self.clients.get(event.clientId));
  if (own) return own;
  const all = await self.clients.matchAll({ type: 'window' });
  return all[0];
}

async function stream(event, file) {
  const client = await pageFor(event);
  if (!client) return new Response('no Peer Pressure page is open to stream from\n', { status: 503 });
  const range = event.request.headers.get('range');
  const head = await ask(client, { pp: 'stream', file, range });
  if (head.next === undefined || head.next >= head.end) {
    return new Response(head.body, { status: head.status, headers: head.headers });
  }
  let pos = head.next;
  const body = new ReadableStream({
    start(controller) {
      controller.enqueue(new Uint8Array(head.body));
    },
    async pull(controller) {
      const piece = await ask(client, { pp: 'read', file, start: pos, end: head.end });
      if (piece.error !== undefined) {
        controller.error(new Error(piece.error));
        return;
      }
      controller.enqueue(new Uint8Array(piece.body));
      pos += piece.body.byteLength;
      if (pos >= head.end) controller.close();
    },
  });
  return new Response(body, { status: head.status, headers: head.headers });
}

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (url.origin !== self.location.origin || !url.pathname.startsWith('/stream/')) return;
  event.respondWith(stream(event, url.pathname.slice('/stream/'.length)));
});

// Peer Pressure's store worker: checks and commits write batches to IndexedDB off the page's
// main thread. Hashing, making a Blob and putting it in IndexedDB each cost the page's main
// thread time it needs for frames and the UI. Started by `writer.rs` from a blob URL.
//
// In:  { db, puts: [[key, [Uint8Array, ...], check], ...], deletes: [key, ...], files: [[key, json], ...] }
//      A chunk comes in the pieces it arrived in (their buffers transferred, not copied).
//      `check`: store the chunk only if its SHA-256 (hex) is its key.
// Out: { ok: true, bad: [[key, actual hex], ...] } or { ok: false, name, message }
//      (name e.g. "QuotaExceededError"; nothing of a failed batch is stored)
let db = null;

function open(name) {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(name);
    req.onsuccess = () => {
      const conn = req.result;
      conn.onversionchange = () => { conn.close(); db = null; };
      resolve(conn);
    };
    req.onerror = () => reject(req.error);
    req.onblocked = () => reject(new Error('database blocked'));
  });
}

function whole(parts) {
  if (parts.length === 1) return parts[0];
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

async function sha256hex(bytes) {
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return Array.from(d, b => b.toString(16).padStart(2, '0')).join('');
}

onmessage = async ({ data: m }) => {
  try {
    // Hash first: a transaction would commit on its own while a digest is awaited.
    const bad = [];
    const puts = [];
    await Promise.all(m.puts.map(async ([key, parts, check]) => {
      const bytes = whole(parts);
      const actual = check ? await sha256hex(bytes) : key;
      if (actual === key) puts.push([key, bytes]); else bad.push([key, actual]);
    }));
    db = db ?? await open(m.db);
    const tx = db.transaction(m.files.length ? ['chunks', 'files'] : ['chunks'], 'readwrite');
    const chunks = tx.objectStore('chunks');
    for (const key of m.deletes) chunks.delete(key);
    for (const [key, bytes] of puts) chunks.put(new Blob([bytes], { type: 'application/octet-stream' }), key);
    if (m.files.length) {
      const files = tx.objectStore('files');
      for (const [key, json] of m.files) files.put(json, key);
    }
    await new Promise((resolve, reject) => {
      tx.oncomplete = resolve;
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error ?? new Error('transaction aborted'));
    });
    postMessage({ ok: true, bad });
  } catch (e) {
    postMessage({ ok: false, name: (e && e.name) || 'Error', message: String((e && e.message) || e) });
  }
};

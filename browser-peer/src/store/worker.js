// Peer Pressure's store worker: commits write batches to IndexedDB off the page's main thread.
// Making a Blob and putting it in IndexedDB each wait on the browser process; in the page that
// wait stalls everything else (frames, hashing, the UI). Started by `writer.rs` from a blob URL.
//
// In:  { db, puts: [[key, Uint8Array], ...], deletes: [key, ...], files: [[key, json], ...] }
// Out: { ok: true } or { ok: false, name, message } (name e.g. "QuotaExceededError")
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

onmessage = async ({ data: m }) => {
  try {
    db = db ?? await open(m.db);
    const tx = db.transaction(m.files.length ? ['chunks', 'files'] : ['chunks'], 'readwrite');
    const chunks = tx.objectStore('chunks');
    for (const key of m.deletes) chunks.delete(key);
    for (const [key, bytes] of m.puts) chunks.put(new Blob([bytes], { type: 'application/octet-stream' }), key);
    if (m.files.length) {
      const files = tx.objectStore('files');
      for (const [key, json] of m.files) files.put(json, key);
    }
    await new Promise((resolve, reject) => {
      tx.oncomplete = resolve;
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error ?? new Error('transaction aborted'));
    });
    postMessage({ ok: true });
  } catch (e) {
    postMessage({ ok: false, name: (e && e.name) || 'Error', message: String((e && e.message) || e) });
  }
};

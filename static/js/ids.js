// Client ids make a resend after a reconnect idempotent (the server acks the
// first copy again). crypto.randomUUID exists only in secure contexts, and a
// self-hosted server is often reached over plain http on a LAN address, so the
// id is built from getRandomValues, which works everywhere.
export function newClientId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

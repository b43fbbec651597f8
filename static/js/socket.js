// The tab's single WebSocket (/ws?ticket=...: a single-use ticket fetched
// just before each attempt, so the long-lived token stays out of URLs). It owns the connection status,
// reconnects with exponential backoff and jitter, and paces outgoing frames so
// a burst (rejoining many rooms, flushing queued messages) stays under the
// server's per-connection rate limit instead of earning `rate_limited` drops.

const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 30_000;
// The server allows 20 frames/s with bursts of 40; stay safely below both.
const SEND_RATE_PER_S = 15;
const SEND_BURST = 30;
// A connection must last this long before the backoff starts over, so a server
// that accepts and at once drops connections is not hammered.
const STABLE_MS = 5000;

export class Connection {
  /**
   * @param {object} opts
   * @param {() => Promise<string>} opts.url  builds the /ws URL (a fresh ticket each time)
   * @param {(code: number, reason: string) => void} opts.onEnded  the server ended the session (4001) or banned the user (4003)
   * @param {(frame: object) => void} opts.onFrame
   * @param {(status: 'connecting'|'online'|'offline', retryInMs?: number) => void} opts.onStatus
   * @param {() => void} opts.onOpen       rejoin rooms, flush the outbox
   * @param {() => Promise<boolean>} opts.isRejected  after a failed upgrade: was the token refused?
   * @param {() => void} opts.onRejected
   */
  constructor(opts) {
    this.opts = opts;
    this.ws = null;
    this.attempt = 0;
    this.retryTimer = null;
    this.stopped = false;
    this.queue = [];
    this.tokens = SEND_BURST;
    this.lastRefill = performance.now();
    this.pumpTimer = null;
    // A laptop waking up or Wi-Fi coming back should not wait out the backoff.
    this.onOnline = () => this.reconnectNow();
    window.addEventListener('online', this.onOnline);
  }

  get isOpen() {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  connect() {
    if (this.stopped || this.ws || this.opening) return;
    clearTimeout(this.retryTimer);
    this.opts.onStatus('connecting');
    this.opening = true;
    Promise.resolve()
      .then(() => this.opts.url())
      .then(
        (url) => {
          this.opening = false;
          if (!this.stopped && !this.ws) this.open(url);
        },
        async () => {
          // No ticket: offline, or the token was refused (the API layer signs out).
          this.opening = false;
          if (!this.stopped && !(await this.opts.isRejected())) this.scheduleRetry();
        },
      );
  }

  open(url) {
    const ws = new WebSocket(url);
    this.ws = ws;
    let openedAt = 0;
    ws.onopen = () => {
      openedAt = performance.now();
      this.tokens = SEND_BURST;
      this.opts.onStatus('online');
      this.opts.onOpen();
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data !== 'string') return;
      let frame;
      try {
        frame = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (frame && typeof frame === 'object') this.opts.onFrame(frame);
    };
    ws.onclose = async (ev) => {
      if (this.ws !== ws) return;
      // The server ended this session or banned the user: no reconnecting.
      if (ev.code === 4001 || ev.code === 4003) {
        this.ws = null;
        this.stop();
        this.opts.onEnded(ev.code, ev.reason || '');
        return;
      }
      this.ws = null;
      this.queue = [];
      clearTimeout(this.pumpTimer);
      this.pumpTimer = null;
      if (this.stopped) return;
      if (openedAt && performance.now() - openedAt > STABLE_MS) this.attempt = 0;
      // A browser hides the HTTP status of a refused upgrade; ask the REST API
      // whether the token is still good before hammering the server with retries.
      if (!openedAt && (await this.opts.isRejected())) {
        this.stop();
        this.opts.onRejected();
        return;
      }
      this.scheduleRetry();
    };
  }

  scheduleRetry() {
    if (this.stopped) return;
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** this.attempt);
    // "Equal jitter": half fixed, half random, so a server restart is not met
    // by every client reconnecting in the same millisecond.
    const delay = Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
    this.attempt += 1;
    this.opts.onStatus('offline', delay);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  reconnectNow() {
    if (this.stopped || this.ws || this.opening) return;
    clearTimeout(this.retryTimer);
    this.connect();
  }

  /** Queue a frame for the open socket; returns false when offline (the caller keeps it). */
  send(frame) {
    if (!this.isOpen) return false;
    this.queue.push(JSON.stringify(frame));
    this.pump();
    return true;
  }

  pump() {
    const now = performance.now();
    this.tokens = Math.min(SEND_BURST, this.tokens + ((now - this.lastRefill) / 1000) * SEND_RATE_PER_S);
    this.lastRefill = now;
    while (this.queue.length && this.tokens >= 1 && this.isOpen) {
      this.ws.send(this.queue.shift());
      this.tokens -= 1;
    }
    if (this.queue.length && !this.pumpTimer) {
      const waitMs = Math.ceil(((1 - this.tokens) / SEND_RATE_PER_S) * 1000);
      this.pumpTimer = setTimeout(() => {
        this.pumpTimer = null;
        this.pump();
      }, waitMs);
    }
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.pumpTimer);
    window.removeEventListener('online', this.onOnline);
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000);
  }
}

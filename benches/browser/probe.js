// Runs inside the benchmarked page, before any of the client's scripts
// (Playwright's addInitScript). It changes nothing the client does; it only
// stamps times, all on the page's own clock (performance.now()):
//
// - arrival: a listener on every WebSocket, added before the client's own
//   onmessage, stamps each live `message` frame and each `history` reply;
// - in the DOM: a MutationObserver on #message-list sees a message's row
//   (li[data-id]) inserted;
// - painted: the first frame that includes that insertion has finished its
//   main-thread rendering work (style, layout, paint) when a task posted after
//   it runs. If the insertion happened inside an animation-frame callback (the
//   new client renders there), that frame is the current one: a task posted
//   now runs right after it. Otherwise (the old client renders from the
//   socket's task) the next frame paints it: requestAnimationFrame, then a
//   task posted from inside that frame. The task is posted with
//   scheduler.postTask at 'user-blocking' priority, which runs ahead of the
//   page's ordinary tasks: behind a backlog of socket events (the old client
//   under the flood) a setTimeout would wait for the whole backlog and stamp
//   far later than the paint;
// - frames: a requestAnimationFrame loop records the interval between
//   consecutive frames, and a PerformanceObserver collects Long Animation
//   Frames (frames whose main-thread work took over 50 ms).
//
// Once a second (and on B.flush()) what was collected is handed to the node
// script (run.mjs) through the exposed function __benchPush, so a page too
// busy to answer at the end has still reported what it did until then.

(() => {
  const nativeRaf = window.requestAnimationFrame.bind(window);
  const B = (window.__bench = {
    running: false,
    arrivals: new Map(), // message id -> {sent (sender's epoch ms), arrival}
    rows: [], // [id, sent, arrival, dom, paint]
    frameTimes: [], // rAF timestamps while running
    loaf: [], // {start, duration, blocking}
    history: [], // {sentAt, arrival, paint, count}
    historySentAt: 0,
    historyArrival: null,
  });

  // Whether the code running now was called from an animation-frame callback.
  // The flag is cleared by a microtask queued after the callback, so the
  // MutationObserver's microtask (queued by the callback's first insertion)
  // still sees it set.
  let inFrame = false;
  window.requestAnimationFrame = (cb) =>
    nativeRaf((t) => {
      inFrame = true;
      try {
        cb(t);
      } finally {
        queueMicrotask(() => {
          inFrame = false;
        });
      }
    });

  const SENT = / t=(\d+(?:\.\d+)?)/;
  const ID = /"id":(\d+)/;
  const NativeWebSocket = window.WebSocket;
  window.WebSocket = class extends NativeWebSocket {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (ev) => {
        const now = performance.now();
        const d = ev.data;
        if (typeof d !== 'string') return;
        if (d.includes('"type":"message"')) {
          const id = d.match(ID);
          const sent = d.match(SENT);
          if (id && sent) B.arrivals.set(Number(id[1]), { sent: Number(sent[1]), arrival: now });
        } else if (d.includes('"type":"history"') && B.running) {
          B.historyArrival = { sentAt: B.historySentAt, arrival: now, count: (d.match(/"id":/g) || []).length };
        }
      });
    }

    send(data) {
      if (typeof data === 'string' && data.includes('"type":"history"')) B.historySentAt = performance.now();
      return super.send(data);
    }
  };

  const urgent = (fn, delay = 0) => scheduler.postTask(fn, { priority: 'user-blocking', delay });
  const afterPaint = (fn) => {
    if (inFrame) urgent(fn);
    else nativeRaf(() => urgent(fn));
  };

  document.addEventListener('DOMContentLoaded', () => {
    const list = document.getElementById('message-list');
    new MutationObserver((records) => {
      const now = performance.now();
      const batch = [];
      for (const r of records) {
        for (const n of r.addedNodes) {
          if (n.nodeType !== 1 || !n.dataset.id) continue;
          const id = Number(n.dataset.id);
          const a = B.arrivals.get(id);
          if (!a) continue;
          B.arrivals.delete(id);
          batch.push([id, a.sent, a.arrival, now]);
        }
      }
      const history = B.historyArrival && records.some((r) => r.addedNodes.length) ? B.historyArrival : null;
      if (history) B.historyArrival = null;
      if (!batch.length && !history) return;
      afterPaint(() => {
        const paint = performance.now();
        for (const row of batch) B.rows.push([...row, paint]);
        if (history) B.history.push({ ...history, paint });
      });
    }).observe(list, { childList: true });
  });

  const loop = (t) => {
    if (B.running) B.frameTimes.push(t);
    nativeRaf(loop);
  };
  nativeRaf(loop);

  const keepLoaf = (entries) => {
    if (!B.running) return;
    for (const e of entries) {
      // Where the frame's time went: scripts, then style and layout, and the rest of rendering.
      const script = e.scripts.reduce((sum, x) => sum + x.duration, 0);
      const layout = e.styleAndLayoutStart ? e.startTime + e.duration - e.styleAndLayoutStart : 0;
      const top = e.scripts.reduce((t, x) => (!t || x.duration > t.duration ? x : t), null);
      const culprit = top ? `${top.invoker} ${top.sourceFunctionName || ''} ${(top.sourceURL || '').split('/').pop()}:${top.sourceCharPosition} ${Math.round(top.duration)} ms (forced style+layout ${Math.round(top.forcedStyleAndLayoutDuration)} ms)` : '';
      B.loaf.push({ start: e.startTime, duration: e.duration, blocking: e.blockingDuration, script, layout, culprit });
    }
  };
  const loafObserver = new PerformanceObserver((list) => keepLoaf(list.getEntries()));
  loafObserver.observe({ type: 'long-animation-frame' });

  B.start = () => {
    B.rows = [];
    B.frameTimes = [];
    B.loaf = [];
    B.history = [];
    B.running = true;
  };
  B.flush = () => {
    if (!window.__benchPush) return;
    // The observer's callback is a task of its own, which may wait: take what is pending now.
    keepLoaf(loafObserver.takeRecords());
    const list = document.getElementById('message-list');
    window.__benchPush({
      rows: B.rows.splice(0),
      frameTimes: B.frameTimes.splice(0),
      loaf: B.loaf.splice(0),
      history: B.history.splice(0),
      at: performance.now(),
      elements: document.getElementsByTagName('*').length,
      messageRows: list ? list.querySelectorAll('li.msg').length : 0,
      heap: performance.memory ? performance.memory.usedJSHeapSize : 0,
    });
  };
  B.stop = () => {
    B.flush();
    B.running = false;
  };
  // Reports are urgent tasks too, so a busy page still reports on time.
  const report = () => {
    if (B.running) B.flush();
    urgent(report, 1000);
  };
  urgent(report, 1000);
})();

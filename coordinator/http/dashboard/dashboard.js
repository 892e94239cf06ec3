// The live dashboard: one snapshot from the `status` event, then every change over Server-Sent
// Events (/api/events). Redraws at most once per animation frame. Every value from the server is
// put in the page as text (textContent), never as HTML: worker names come from the workers.
/* global uPlot */

const $ = (id) => document.getElementById(id);
const css = getComputedStyle(document.documentElement);
const color = (name) => css.getPropertyValue(name).trim();

const state = {
  run: null,
  progress: null,
  workers: [],
  steps: [], // per-step points, thinned like the server's: every `stride`-th step
  stride: 1,
  last: null, // the newest step, whether or not the curve keeps it
  epochs: [],
  events: [],
  predictions: null,
};
// A whole CIFAR-10 run is 25,000 steps: past MAX_POINTS the curves keep every other point, then
// every 4th..., so a long run stays cheap to draw and still shows its start.
const MAX_POINTS = 4000;

function addPoint(p) {
  state.last = p;
  if (p.step % state.stride !== 0) return;
  state.steps.push(p);
  if (state.steps.length > MAX_POINTS) {
    state.stride *= 2;
    state.steps = state.steps.filter((q) => q.step % state.stride === 0);
  }
}

// For people and the browser test: how long after the coordinator finished a step it was drawn.
const latency = { samples: [], drawnStep: 0 };
window.__dtrain = { state, latency };

// ---- charts ---------------------------------------------------------------------------------

function chart(el, series, yLabel, range, wholeX = false) {
  const opts = {
    width: el.clientWidth || 300,
    height: el.clientHeight || 190,
    legend: { show: false },
    cursor: { show: true, drag: { x: false, y: false } },
    scales: { x: { time: false }, y: range ? { range } : {} },
    axes: [
      { stroke: color('--muted'), grid: { stroke: color('--line') }, size: 28, ...(wholeX ? { incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500] } : {}) },
      { stroke: color('--muted'), grid: { stroke: color('--line') }, size: 44, label: yLabel, labelSize: 14 },
    ],
    series: [{}, ...series],
  };
  return new uPlot(opts, [[], ...series.map(() => [])], el);
}

const line = (label, stroke, width = 2, points = false) => ({ label, stroke: color(stroke), width, points: { show: points, size: 6, fill: color(stroke) } });
const charts = {
  stepLoss: chart($('chart-step-loss'), [line('batch', '--batch', 1), line('epoch mean', '--train')], 'loss'),
  stepAcc: chart($('chart-step-acc'), [line('batch', '--batch', 1), line('epoch mean', '--train')], 'accuracy', [0, 1]),
  epochLoss: chart($('chart-epoch-loss'), [line('train', '--train', 2, true), line('validation', '--val', 2, true)], 'loss', undefined, true),
  epochAcc: chart($('chart-epoch-acc'), [line('train', '--train', 2, true), line('validation', '--val', 2, true)], 'accuracy', [0, 1], true),
};

new ResizeObserver(() => {
  for (const [key, el] of [['stepLoss', 'chart-step-loss'], ['stepAcc', 'chart-step-acc'], ['epochLoss', 'chart-epoch-loss'], ['epochAcc', 'chart-epoch-acc']]) {
    charts[key].setSize({ width: $(el).clientWidth, height: $(el).clientHeight });
  }
}).observe(document.querySelector('.charts'));

// ---- formatting -----------------------------------------------------------------------------

const pct = (x) => (x == null ? '–' : `${(x * 100).toFixed(1)}%`);
const num = (x, digits = 4) => (x == null ? '–' : x.toFixed(digits));
function bytes(n) {
  if (!n) return '0 B';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  const i = Math.min(units.length - 1, Math.floor(Math.log10(n) / 3));
  return `${(n / 1000 ** i).toFixed(i ? 1 : 0)} ${units[i]}`;
}
function duration(s) {
  if (s == null) return '–';
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}
const clock = (iso) => new Date(iso).toLocaleTimeString([], { hour12: false });

// ---- drawing --------------------------------------------------------------------------------

let scheduled = false;
function redraw() {
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(() => {
    scheduled = false;
    draw();
  });
}

function draw() {
  const { run, progress } = state;
  if (run) {
    $('run-title').textContent = `${run.model} on ${run.dataset} · ${run.epochs} epoch${run.epochs === 1 ? '' : 's'} · batch ${run.batchSize}${run.parameters ? ` · ${run.parameters.toLocaleString()} parameters` : ''} · ${run.transport === 'threads' ? 'worker threads' : 'WebSocket workers'}`;
    const badge = $('run-state');
    badge.textContent = run.state;
    badge.className = `badge ${run.state === 'finished' ? 'badge-ok' : run.state === 'stopped' ? 'badge-bad' : run.state === 'waiting' ? 'badge-muted' : ''}`;
  }
  if (progress) {
    $('epoch').textContent = progress.epoch ? `${progress.epoch} / ${run ? run.epochs : '?'}` : '–';
    $('step').textContent = String(progress.step);
    $('step-sub').textContent = progress.stepsInEpoch ? `${progress.stepInEpoch}/${progress.stepsInEpoch} this epoch · ${progress.totalSteps} total` : '';
    $('throughput').textContent = progress.imagesPerSecond ? `${Math.round(progress.imagesPerSecond).toLocaleString()} img/s` : '–';
    $('eta').textContent = run && run.state === 'finished' ? 'done' : duration(progress.etaSeconds);
  }
  const last = state.last;
  if (last) {
    $('loss').textContent = num(last.loss);
    $('accuracy').textContent = pct(last.epochAccuracy);
    $('step-time').textContent = `${Math.round(last.ms)} ms/step · compute ${Math.round(last.computeMs)} ms`;
  }
  const lastEpoch = state.epochs[state.epochs.length - 1];
  $('val-accuracy').textContent = lastEpoch ? pct(lastEpoch.val_accuracy) : '–';
  drawCharts();
  drawWorkers();
  drawEvents();
  drawPredictions();
  if (last && last.step !== latency.drawnStep) {
    latency.drawnStep = last.step;
    latency.samples.push(Date.now() - last.t);
    if (latency.samples.length > 200) latency.samples.shift();
    const sorted = [...latency.samples].sort((a, b) => a - b);
    $('latency').textContent = `step ${last.step} drawn ${Date.now() - last.t} ms after the coordinator finished it (median ${sorted[Math.floor(sorted.length / 2)]} ms)`;
  }
}

function drawCharts() {
  const s = state.steps;
  const x = s.map((p) => p.step);
  charts.stepLoss.setData([x, s.map((p) => p.loss), s.map((p) => p.epochLoss)]);
  charts.stepAcc.setData([x, s.map((p) => p.accuracy), s.map((p) => p.epochAccuracy)]);
  const e = state.epochs;
  for (const fig of document.querySelectorAll('.per-epoch')) fig.classList.toggle('no-data', e.length === 0);
  const ex = e.map((r) => r.epoch);
  charts.epochLoss.setData([ex, e.map((r) => r.loss), e.map((r) => r.val_loss)]);
  charts.epochAcc.setData([ex, e.map((r) => r.accuracy), e.map((r) => r.val_accuracy)]);
}

function cell(tr, text, cls) {
  const td = document.createElement('td');
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
}

function drawWorkers() {
  const live = state.workers.filter((w) => w.state === 'joined').length;
  $('worker-count').textContent = String(live);
  const rows = state.workers.map((w) => {
    const tr = document.createElement('tr');
    tr.dataset.worker = w.id;
    cell(tr, w.id);
    cell(tr, w.name);
    cell(tr, w.backend);
    cell(tr, w.state, `state-${w.state}`);
    cell(tr, String(w.slices), 'num');
    cell(tr, w.lastComputeMs == null ? '–' : `${w.lastComputeMs.toFixed(1)} ms`, 'num');
    cell(tr, bytes(w.bytesOut), 'num');
    cell(tr, bytes(w.bytesIn), 'num');
    cell(tr, w.state === 'joined' ? `joined ${clock(w.joinedAt)}` : `${w.state} ${clock(w.leftAt)}`);
    if (w.reason) tr.title = w.reason;
    return tr;
  });
  $('workers').tBodies[0].replaceChildren(...rows);
}

function drawEvents() {
  const items = [...state.events].reverse().slice(0, 30).map((e) => {
    const li = document.createElement('li');
    li.className = `ev-${e.kind}`;
    const t = document.createElement('time');
    t.textContent = clock(e.t);
    li.append(t, e.text);
    li.title = e.text;
    return li;
  });
  $('events').replaceChildren(...items);
}

function drawPredictions() {
  if (!state.predictions) return;
  $('predictions-panel').hidden = false;
  if ($('predictions').src !== state.predictions) $('predictions').src = state.predictions;
  if (state.run && state.run.test) $('test-result').textContent = `test accuracy ${pct(state.run.test.accuracy)}`;
}

// ---- live updates ---------------------------------------------------------------------------

const handlers = {
  status(s) {
    Object.assign(state, { run: s.run, progress: s.progress, workers: s.workers, steps: s.history.steps, stride: s.history.stepStride, epochs: s.history.epochs, events: s.events, predictions: s.predictions || null });
    state.last = s.recentSteps.length ? s.recentSteps[s.recentSteps.length - 1] : null;
  },
  step({ point, progress, workers }) {
    addPoint(point);
    state.progress = progress;
    state.workers = workers;
    if (state.run) state.run.state = 'training';
  },
  epoch(record) {
    state.epochs.push(record);
  },
  workers(rows) {
    state.workers = rows;
  },
  event(e) {
    state.events.push(e);
    if (state.events.length > 50) state.events.shift();
  },
  finished({ run, predictions }) {
    state.run = run;
    if (predictions) state.predictions = predictions;
  },
};

function connect() {
  const source = new EventSource('/api/events');
  for (const [type, handle] of Object.entries(handlers)) {
    source.addEventListener(type, (msg) => {
      handle(JSON.parse(msg.data));
      redraw();
    });
  }
  source.onopen = () => {
    $('connection').textContent = 'live';
    $('connection').className = 'badge badge-ok';
  };
  source.onerror = () => {
    const over = state.run && (state.run.state === 'finished' || state.run.state === 'stopped');
    $('connection').textContent = over ? 'run over: coordinator gone' : 'reconnecting…';
    $('connection').className = 'badge badge-muted';
    // A finished run's coordinator has exited: keep what is shown instead of retrying forever.
    if (over) source.close();
  };
}

connect();

// The page of `lorat app`. Every name shown comes from the server as data and enters the page through
// textContent or element attributes, never through innerHTML.
'use strict';

const $ = (id) => document.getElementById(id);

function element(tag, text, attributes) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, value);
  return node;
}

function setStatus(message, isError) {
  const status = $('status');
  status.textContent = message || '';
  status.className = isError ? 'error' : '';
}

async function api(path, options) {
  const response = await fetch(path, options);
  const type = response.headers.get('content-type') || '';
  const data = type.includes('json') ? await response.json() : {error: await response.text()};
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function post(path, data) {
  return api(path, {method: 'POST', headers: {'content-type': 'application/json'}, body: JSON.stringify(data || {})});
}

// Boxes are in the frame's pixels; the canvas is drawn at screen resolution (see fitCanvas), so lines and labels
// are given in screen pixels divided by the enlargement.
function drawBox(context, box, colour, label, dashed, outlined) {
  if (!box) return;
  const [x, y, w, h] = box;
  const pixel = 1 / (context.canvas.frameScale || 1);
  const width = 2 * pixel;
  context.save();
  if (dashed) context.setLineDash([6 * pixel, 4 * pixel]);
  if (outlined) {  // the white ground truth, outlined so that it shows on white too
    context.lineWidth = width + 2 * pixel;
    context.strokeStyle = '#000';
    context.strokeRect(x, y, w, h);
  }
  context.lineWidth = width;
  context.strokeStyle = colour;
  context.strokeRect(x, y, w, h);
  if (label) {
    const size = 12 * pixel;
    context.font = size + 'px sans-serif';
    const labelWidth = context.measureText(label).width + 6 * pixel;
    const top = y - size - 4 * pixel >= 0 ? y - size - 4 * pixel : y;
    context.fillStyle = colour;
    context.fillRect(x, top, labelWidth, size + 4 * pixel);
    context.fillStyle = '#000';
    context.fillText(label, x + 3 * pixel, top + size);
  }
  context.restore();
}

// One image request at a time: a frame asked for while another loads replaces the one waiting, so scrubbing or
// fast tracking never queues up requests. Each load is a new Image, so a frame already shown stays drawable.
class FrameLoader {
  constructor(onLoad) {
    this.onLoad = onLoad;
    this.busy = false;
    this.wanted = null;
  }

  show(url, key) {
    this.wanted = {url, key};
    if (!this.busy) this.next();
  }

  next() {
    if (!this.wanted) return;
    const {url, key} = this.wanted;
    this.wanted = null;
    this.busy = true;
    const image = new Image();
    image.onload = () => {
      this.busy = false;
      this.onLoad(image, key);
      this.next();
    };
    image.onerror = () => {
      this.busy = false;
      this.next();
    };
    image.src = url;
  }
}

// ---------------------------------------------------------------- tabs and folders
let listing = [];

function showTab(name) {
  for (const tab of ['track', 'results']) {
    $(tab).hidden = tab !== name;
    $('tab-' + tab).classList.toggle('active', tab === name);
  }
}

async function loadFolders() {
  listing = await api('/api/folders');
  const select = $('video-choice');
  select.replaceChildren();
  const choices = $('evaluation-choice');
  choices.replaceChildren();
  for (const folder of listing) {
    for (const video of folder.videos) {
      const option = element('option', folder.name + '/' + video);
      option.value = JSON.stringify({folder: folder.folder, path: video});
      select.append(option);
    }
    for (const evaluation of folder.evaluations) {
      const box = element('input', null, {type: 'checkbox'});
      box.value = JSON.stringify({folder: folder.folder, path: evaluation});
      const label = element('label', null, {class: 'key'});
      label.append(box, document.createTextNode(' ' + folder.name + (evaluation === '.' ? '' : '/' + evaluation)));
      choices.append(label);
    }
  }
  if (!select.options.length) select.append(element('option', '(no videos in the folders)'));
}

// ---------------------------------------------------------------- Track
const track = {session: null, frames: 0, current: 0, targets: {}, selected: null, running: false, follow: false,
               events: null, drag: null, image: null, imageFrame: -1, colours: ['#ffffff']};

function targetColour(id) {  // the server's palette (palette.target_colour), by target id from 1
  return track.colours[(Number(id) - 1) % track.colours.length];
}

const trackLoader = new FrameLoader((image, frame) => { track.image = image; track.imageFrame = frame; drawTrack(); });

function drawTrack() {
  const canvas = $('track-canvas');
  const context = canvas.getContext('2d');
  $('track-frame').textContent = 'frame ' + (track.current + 1) + ' / ' + track.frames;
  $('track-frame').dataset.frame = String(track.current);
  if (!track.image || track.imageFrame !== track.current) return;  // drawn when the frame has loaded
  fitCanvas(canvas, track.image);
  canvas.dataset.frame = String(track.current);  // the frame on show (tests wait for it)
  for (const [id, target] of Object.entries(track.targets)) {
    const found = target.boxes[track.current];
    const anchor = target.anchors[track.current];
    if (found) drawBox(context, found, targetColour(id), id + ': ' + found[4].toFixed(2));  // as lorat track renders
    else if (anchor) drawBox(context, anchor, targetColour(id), id, true);
  }
  if (track.drag && track.drag.box) drawBox(context, track.drag.box, '#ffffff', null, true);
}

// Small frames are shown enlarged (up to 4x, about 900 px wide), drawn at that size so that boxes and labels stay
// sharp; the context's transform keeps every drawing call in the frame's own pixels.
function fitCanvas(canvas, image) {
  const scale = Math.min(4, Math.max(1, 900 / image.naturalWidth));
  const width = Math.round(image.naturalWidth * scale);
  const height = Math.round(image.naturalHeight * scale);
  if (canvas.width !== width) canvas.width = width;
  if (canvas.height !== height) canvas.height = height;
  canvas.frameWidth = image.naturalWidth;
  canvas.frameHeight = image.naturalHeight;
  canvas.frameScale = width / image.naturalWidth;
  const context = canvas.getContext('2d');
  context.setTransform(canvas.frameScale, 0, 0, canvas.frameScale, 0, 0);
  context.drawImage(image, 0, 0);
  return context;
}

function showTrackFrame(frame) {
  track.current = Math.max(0, Math.min(frame, Math.max(track.frames - 1, 0)));
  $('track-slider').value = String(track.current);
  trackLoader.show('/api/track/' + track.session + '/frame/' + track.current, track.current);
  drawTrack();
}

function setTrackState(state, text) {
  const label = $('track-state');
  label.dataset.state = state;
  label.textContent = text || state;
}

function renderTargets() {
  const holder = $('targets');
  holder.replaceChildren();
  const add = element('button', 'New target', {type: 'button', id: 'new-target'});
  add.onclick = () => { track.selected = null; renderTargets(); };
  holder.append(add);
  for (const id of Object.keys(track.targets)) {
    const item = element('span', null, {class: 'target' + (String(track.selected) === id ? ' selected' : ''),
                                        'data-target': id});
    const swatch = element('span', null, {class: 'swatch'});
    swatch.style.background = targetColour(id);
    const pick = element('button', 'target ' + id, {type: 'button'});
    pick.onclick = () => { track.selected = Number(id); renderTargets(); };
    const remove = element('button', 'remove from here', {type: 'button'});
    remove.onclick = () => guarded(() => post('/api/track/' + track.session + '/remove',
                                              {target: Number(id), frame: track.current}));
    item.append(swatch, pick, remove);
    holder.append(item);
  }
  $('track-help').textContent = track.selected === null
    ? 'Drag on the frame to draw a new target.'
    : 'Drag on the frame to correct target ' + track.selected + ' on this frame (it restarts from there).';
}

function applyTrackEvent(event) {
  if (event.type === 'target') {
    const target = track.targets[event.target] || (track.targets[event.target] = {anchors: {}, boxes: {}});
    target.anchors[event.frame] = event.box;
    if (!track.running) setTrackState('idle', 'press Track to track from the boxes drawn');
    renderTargets();
  } else if (event.type === 'clear') {
    const target = track.targets[event.target];
    if (!target) return;
    if (event.removed) { delete track.targets[event.target]; renderTargets(); return; }
    for (const frame of Object.keys(target.boxes)) if (Number(frame) >= event.from) delete target.boxes[frame];
    target.anchors = event.anchors;
  } else if (event.type === 'boxes') {
    for (const [id, box] of Object.entries(event.boxes)) {
      const target = track.targets[id] || (track.targets[id] = {anchors: {}, boxes: {}});
      target.boxes[event.frame] = box;
    }
    if (event.frame >= track.frames) {  // a live source grows as it is tracked
      track.frames = event.frame + 1;
      $('track-slider').max = String(track.frames - 1);
    }
    if (track.follow) { showTrackFrame(event.frame); return; }
  } else if (event.type === 'state') {
    track.running = event.running;
    track.follow = event.running;
    if (event.running) setTrackState('running', 'tracking…');
    else if (event.error) { setTrackState('error', 'stopped: ' + event.error); setStatus(event.error, true); }
    else setTrackState(event.done ? 'done' : 'paused');
  }
  drawTrack();
}

async function openSession(snapshot) {
  if (track.events) track.events.close();
  track.session = snapshot.id;
  track.frames = snapshot.frames;
  track.colours = snapshot.colours;
  track.targets = {};
  for (const [id, target] of Object.entries(snapshot.targets)) {
    track.targets[id] = {anchors: target.anchors, boxes: target.boxes};
  }
  track.selected = null;
  $('track-view').hidden = false;
  $('track-slider').max = String(Math.max(snapshot.frames - 1, 0));
  $('export-csv').href = '/api/track/' + snapshot.id + '/boxes.csv';
  $('export-files').href = '/api/track/' + snapshot.id + '/boxes.zip';
  $('export-video').href = '/api/track/' + snapshot.id + '/rendered.mp4';
  setTrackState(snapshot.running ? 'running' : 'idle', snapshot.running ? 'tracking…' : 'draw a box, then Track');
  renderTargets();
  showTab('track');
  showTrackFrame(0);
  setStatus(snapshot.name);
  track.events = new EventSource('/api/track/' + snapshot.id + '/events?from=' + snapshot.events);
  track.events.onmessage = (message) => applyTrackEvent(JSON.parse(message.data));
  watchFrameCount(snapshot.id, snapshot.complete);
}

async function watchFrameCount(session, complete) {
  while (!complete && track.session === session) {  // a video being decoded: its frame count grows
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const snapshot = await api('/api/track/' + session);
    track.frames = snapshot.frames;
    complete = snapshot.complete;
    $('track-slider').max = String(Math.max(track.frames - 1, 0));
    drawTrack();
  }
}

function canvasPoint(canvas, event) {  // in the frame's pixels
  const rect = canvas.getBoundingClientRect();
  return [(event.clientX - rect.left) * canvas.frameWidth / rect.width,
          (event.clientY - rect.top) * canvas.frameHeight / rect.height];
}

function setupTrack() {
  const canvas = $('track-canvas');
  canvas.addEventListener('mousedown', (event) => {
    if (!track.session) return;
    track.drag = {start: canvasPoint(canvas, event), box: null};
  });
  canvas.addEventListener('mousemove', (event) => {
    if (!track.drag) return;
    const [x0, y0] = track.drag.start;
    const [x1, y1] = canvasPoint(canvas, event);
    track.drag.box = [Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0)];
    drawTrack();
  });
  window.addEventListener('mouseup', () => {
    const drag = track.drag;
    track.drag = null;
    if (!drag || !drag.box || drag.box[2] < 2 || drag.box[3] < 2) { drawTrack(); return; }
    track.follow = false;
    guarded(async () => {
      const answer = await post('/api/track/' + track.session + '/box',
                                {frame: track.current, box: drag.box, target: track.selected});
      track.selected = null;
      setStatus('target ' + answer.target + ' on frame ' + (track.current + 1));
      renderTargets();
    });
  });
  $('track-slider').addEventListener('input', (event) => {
    track.follow = false;
    showTrackFrame(Number(event.target.value));
  });
  $('track-start').onclick = () => guarded(async () => {
    track.follow = true;
    await post('/api/track/' + track.session + '/start');
  });
  $('track-pause').onclick = () => guarded(async () => {
    track.follow = false;
    await post('/api/track/' + track.session + '/pause');
  });
  $('open-video').onclick = () => guarded(async () => {
    const value = $('video-choice').value;
    if (!value.startsWith('{')) throw new Error('no video to open');
    setStatus('opening…');
    await openSession(await post('/api/track/open', JSON.parse(value)));
  });
  $('open-source').onclick = () => guarded(async () => {
    setStatus('opening…');
    await openSession(await post('/api/track/open', {source: $('source-url').value}));
  });
  $('upload').addEventListener('change', () => guarded(async () => {
    const file = $('upload').files[0];
    if (!file) return;
    setStatus('uploading…');
    await openSession(await api('/api/track/upload', {method: 'POST', body: file,
      headers: {'x-file-name': encodeURIComponent(file.name).replace(/%20/g, ' ').replace(/%[0-9A-F]{2}/g, '_')}}));
  }));
}

// ---------------------------------------------------------------- Results
const results = {id: null, overview: null, sequence: null, current: 0, timer: null, image: null, imageFrame: -1};
const resultsLoader = new FrameLoader((image, frame) => {
  results.image = image;
  results.imageFrame = frame;
  drawResults();
});

function drawResults() {
  const sequence = results.sequence;
  if (!sequence) return;
  const canvas = $('results-canvas');
  const context = canvas.getContext('2d');
  if (!results.image || results.imageFrame !== results.current) return;  // drawn when the frame has loaded
  fitCanvas(canvas, results.image);
  canvas.dataset.frame = String(results.current);
  drawBox(context, sequence.ground_truth[results.current], results.overview.ground_truth, null, false, true);
  for (const tracker of sequence.trackers) drawBox(context, tracker.boxes[results.current], tracker.colour, null);
  const number = sequence.numbers[results.current];
  const ious = sequence.trackers.map((tracker) => {
    const value = tracker.iou[results.current];
    return tracker.name + ' ' + (value === null ? '–' : value.toFixed(2));
  });
  $('results-frame').textContent =
    'frame ' + number + ' (' + (results.current + 1) + ' of ' + sequence.frames + ')  IoU: ' + ious.join(', ');
  $('results-frame').dataset.frame = String(results.current);
  const cursor = $('iou-cursor');
  if (cursor) {
    const x = String(xOf(results.current, sequence.frames));
    cursor.setAttribute('x1', x);
    cursor.setAttribute('x2', x);
  }
}

function xOf(frame, frames) { return frames > 1 ? (frame / (frames - 1)) * 600 : 0; }
function yOf(iou) { return 155 - iou * 150; }

function showResultsFrame(frame) {
  const sequence = results.sequence;
  results.current = Math.max(0, Math.min(frame, sequence.frames - 1));
  $('results-slider').value = String(results.current);
  resultsLoader.show('/api/results/' + results.id + '/sequence/' + encodeURIComponent(sequence.name) + '/frame/' +
                     results.current, results.current);
  drawResults();
}

const SVG = 'http://www.w3.org/2000/svg';

function plotIou(sequence) {
  const svg = $('iou-plot');
  svg.replaceChildren();
  const half = document.createElementNS(SVG, 'line');  // IoU 0.5, the success threshold
  for (const [k, v] of Object.entries({x1: 0, x2: 600, y1: yOf(0.5), y2: yOf(0.5), stroke: '#ccc',
                                       'stroke-dasharray': '4 4'})) half.setAttribute(k, String(v));
  svg.append(half);
  for (const tracker of sequence.trackers) {
    // one path, broken where the IoU is unknown (the target absent), so no line bridges those frames
    const line = document.createElementNS(SVG, 'path');
    let path = '';
    let drawing = false;
    tracker.iou.forEach((value, frame) => {
      if (value === null) { drawing = false; return; }
      path += (drawing ? ' L' : ' M') + xOf(frame, sequence.frames).toFixed(2) + ',' + yOf(value).toFixed(2);
      drawing = true;
    });
    line.setAttribute('d', path.trim());
    line.setAttribute('class', 'iou');
    line.setAttribute('fill', 'none');
    line.setAttribute('stroke', tracker.colour);
    line.setAttribute('stroke-width', '2');
    line.setAttribute('vector-effect', 'non-scaling-stroke');
    line.setAttribute('data-tracker', tracker.name);
    line.setAttribute('data-iou', tracker.iou.map((v) => (v === null ? '' : String(v))).join(','));
    svg.append(line);
  }
  const cursor = document.createElementNS(SVG, 'line');
  for (const [k, v] of Object.entries({id: 'iou-cursor', y1: 0, y2: 160, stroke: '#222'})) {
    cursor.setAttribute(k, String(v));
  }
  svg.append(cursor);
  svg.onclick = (event) => {
    const rect = svg.getBoundingClientRect();
    showResultsFrame(Math.round((event.clientX - rect.left) / rect.width * (sequence.frames - 1)));
  };
}

function showLost(sequence) {
  const holder = $('lost');
  holder.replaceChildren();
  sequence.trackers.forEach((tracker, index) => {
    const row = element('p');
    const swatch = element('span', null, {class: 'swatch'});
    swatch.style.background = tracker.colour;
    row.append(swatch, document.createTextNode(' ' + tracker.name + ' loses the target at: '));
    if (!tracker.lost.length) row.append(document.createTextNode('never'));
    for (const frame of tracker.lost) {
      const jump = element('button', 'frame ' + sequence.numbers[frame], {type: 'button', class: 'lost-frame',
                                                                          'data-frame': String(frame),
                                                                          'data-tracker': String(index)});
      jump.onclick = () => { stopPlaying(); showResultsFrame(frame); };
      row.append(jump);
    }
    holder.append(row);
  });
}

async function openSequence(name, row) {
  stopPlaying();
  for (const other of document.querySelectorAll('#sequence-table tbody tr')) other.classList.remove('selected');
  row.classList.add('selected');
  results.sequence = await api('/api/results/' + results.id + '/sequence/' + encodeURIComponent(name));
  $('results-slider').max = String(results.sequence.frames - 1);
  $('numbering').textContent = results.sequence.numbering;
  plotIou(results.sequence);
  showLost(results.sequence);
  showResultsFrame(0);
}

function stopPlaying() {
  if (results.timer) clearInterval(results.timer);
  results.timer = null;
  $('results-play').textContent = 'Play';
}

function showOverview(overview) {
  results.overview = overview;
  $('results-view').hidden = false;
  $('results-title').textContent = overview.title;
  const legend = $('legend');
  legend.replaceChildren();
  const keys = [['ground truth', overview.ground_truth], ...overview.trackers.map((t) => [t.name, t.colour])];
  for (const [name, colour] of keys) {
    const key = element('span', null, {class: 'key'});
    const swatch = element('span', null, {class: 'swatch'});
    swatch.style.background = colour;
    key.append(swatch, document.createTextNode(' ' + name));
    legend.append(key);
  }
  const head = element('tr');
  head.append(element('th', 'sequence (worst first)'), element('th', 'frames'));
  overview.trackers.forEach((tracker, k) => {
    const suffix = overview.trackers.length > 1 ? ' [' + (k + 1) + ']' : '';  // as lorat report numbers them
    for (const metric of overview.metrics) head.append(element('th', metric + suffix));
  });
  $('sequence-table').tHead.replaceChildren(head);
  const body = $('sequence-table').tBodies[0];
  body.replaceChildren();
  for (const sequence of overview.sequences) {
    const row = element('tr', null, {'data-sequence': sequence.name});
    row.append(element('td', sequence.name), element('td', sequence.frames));
    for (const scores of sequence.scores) for (const value of scores) row.append(element('td', value.toFixed(1)));
    row.onclick = () => guarded(() => openSequence(sequence.name, row));
    body.append(row);
  }
}

function setupResults() {
  $('open-results').onclick = () => guarded(async () => {
    const ticked = document.querySelectorAll('#evaluation-choice input:checked');
    const chosen = [...ticked].map((box) => JSON.parse(box.value));
    if (!chosen.length) throw new Error('tick one or more evaluation folders');
    setStatus('reading results…');
    const overview = await post('/api/results', {folders: chosen});
    results.id = overview.id;
    showOverview(overview);
    setStatus(overview.title);
  });
  $('results-slider').addEventListener('input', (event) => {
    stopPlaying();
    showResultsFrame(Number(event.target.value));
  });
  $('results-play').onclick = () => {
    if (results.timer || !results.sequence) { stopPlaying(); return; }
    if (results.current >= results.sequence.frames - 1) showResultsFrame(0);
    $('results-play').textContent = 'Pause';
    results.timer = setInterval(() => {
      if (results.current >= results.sequence.frames - 1) { stopPlaying(); return; }
      showResultsFrame(results.current + 1);
    }, 40);
  };
}

async function guarded(action) {
  try {
    await action();
  } catch (error) {
    setStatus(error.message, true);
  }
}

// Left and right arrows step one frame in the view on show (not while typing in a field).
function stepFrame(event) {
  if (event.target.tagName === 'INPUT' && event.target.type !== 'range') return;
  const step = {ArrowLeft: -1, ArrowRight: 1}[event.key];
  if (!step) return;
  event.preventDefault();
  if (!$('track').hidden && track.session) {
    track.follow = false;
    showTrackFrame(track.current + step);
  } else if (!$('results').hidden && results.sequence) {
    stopPlaying();
    showResultsFrame(results.current + step);
  }
}

window.addEventListener('DOMContentLoaded', () => {
  window.addEventListener('keydown', stepFrame);
  $('tab-track').onclick = () => showTab('track');
  $('tab-results').onclick = () => showTab('results');
  setupTrack();
  setupResults();
  showTab('track');
  guarded(async () => {
    await loadFolders();
    if (!listing.some((f) => f.videos.length) && listing.some((f) => f.evaluations.length)) showTab('results');
    const session = new URLSearchParams(location.search).get('session');
    if (session) await openSession(await api('/api/track/' + encodeURIComponent(session)));
    document.body.dataset.ready = 'true';
  });
});

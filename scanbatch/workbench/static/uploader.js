// The upload tab's photo chooser (an anywidget). The photos stay in the browser: the kernel
// gets each file's metadata only (name, size, date, first bytes), groups them into records and
// sends the records back to be shown; when the director sends, it hands over one ticket per
// job, and this code posts the files straight to the API with it. So a crate of any size never
// travels through the page's websocket, and the kernel never holds a photo.

const THUMB_PX = 96;
const META_CHUNK = 100; // photos per metadata message: keeps each message far below the cap
const META_PARALLEL = 8;

let exifrModule = null;

async function exifr(model) {
  // Shipped with the package (static/exifr) and handed over as text: nothing is fetched
  // from another site.
  if (exifrModule === null) {
    const url = URL.createObjectURL(
      new Blob([model.get("_exifr")], { type: "text/javascript" }),
    );
    try {
      exifrModule = await import(url);
    } finally {
      URL.revokeObjectURL(url);
    }
  }
  return exifrModule;
}

function base64(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

function pad(n) {
  return String(n).padStart(2, "0");
}

// EXIF times carry no zone: keep the camera's wall-clock time, as the kernel's reader does.
function wallClock(date) {
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}` +
    `T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`
  );
}

async function takenAt(lib, file) {
  try {
    // Not `pick`: the lite build throws on it. Only the Exif IFD's DateTimeOriginal is read.
    const tags = await lib.parse(file, { ifd0: false, exif: ["DateTimeOriginal"] });
    const when = tags && tags.DateTimeOriginal;
    return when instanceof Date && !isNaN(when) ? wallClock(when) : null;
  } catch (_err) {
    return null; // no EXIF, or not a photo: grouping by time then says so for this file
  }
}

async function describe(lib, file, index, headBytes) {
  const head = new Uint8Array(await file.slice(0, headBytes).arrayBuffer());
  return {
    index,
    name: file.name,
    size: file.size,
    lastModified: file.lastModified,
    head: base64(head),
    taken: await takenAt(lib, file),
  };
}

async function mapLimited(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  async function worker() {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

// As the kernel writes sizes (upload.py, `megabytes`): kB under 1 MB (a crate of small photos
// read "0.0 of 0.0 MB"), one decimal under 10 MB. `unit` is the total's, so both ends agree.
function unitOf(bytes) {
  return bytes < 1e6 ? "kB" : "MB";
}

function megabytes(bytes, unit = unitOf(bytes)) {
  if (unit === "kB") return Math.round(bytes / 1e3).toLocaleString("en");
  const digits = bytes < 1e7 ? 1 : 0;
  return (bytes / 1e6).toLocaleString("en", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

const STYLE = `
.sb-uploader { font-family: var(--jp-ui-font-family, sans-serif); font-size: 13px; }
.sb-uploader .sb-bar { display: flex; gap: 8px; align-items: center; margin: 4px 0; }
.sb-uploader button { padding: 4px 12px; border: 1px solid #9aa4ae; border-radius: 3px;
  background: #f4f6f8; cursor: pointer; font-size: 13px; }
.sb-uploader button.sb-primary { background: #1565c0; color: #fff; border-color: #0d47a1; }
.sb-uploader button:disabled { opacity: .5; cursor: default; }
.sb-uploader .sb-status { color: #37474f; }
.sb-uploader .sb-sending { display: none; align-items: center; gap: 8px; margin: 6px 0; }
.sb-uploader .sb-sending progress { width: 420px; height: 14px; }
.sb-uploader .sb-records { display: flex; flex-wrap: wrap; gap: 8px; align-items: flex-start; }
.sb-uploader .sb-record { border: 1px solid #d5dbe1; border-radius: 4px; padding: 4px 8px;
  background: #fbfcfd; min-width: 330px; }
.sb-uploader .sb-record-title { font-weight: bold; margin-bottom: 4px; }
.sb-uploader .sb-record-photos { display: flex; flex-wrap: wrap; gap: 6px; }
.sb-uploader .sb-photo { width: ${THUMB_PX + 8}px; margin: 0; text-align: center; }
.sb-uploader .sb-thumb { width: ${THUMB_PX}px; height: ${THUMB_PX}px; display: flex;
  align-items: center; justify-content: center; background: #eceff1; border-radius: 3px;
  overflow: hidden; font-size: 10px; color: #37474f; white-space: pre-line; text-align: center;
  overflow-wrap: anywhere; }
.sb-uploader .sb-thumb canvas { max-width: ${THUMB_PX}px; max-height: ${THUMB_PX}px; }
.sb-uploader .sb-photo figcaption { font-size: 10px; overflow: hidden; text-overflow: ellipsis;
  white-space: nowrap; }
.sb-uploader .sb-photo select { width: ${THUMB_PX + 8}px; font-size: 10px; }
.sb-uploader .sb-move { display: flex; justify-content: space-between; }
.sb-uploader .sb-move button { padding: 0 5px; font-size: 11px; }
.sb-uploader .sb-context input { width: 104px; margin: 4px 4px 0 0; font-size: 11px; }
.sb-uploader .sb-more { margin: 4px 0; }
`;

const RECORDS_SHOWN = 40; // more are shown on request: 500 tiles at once make a long page

function render({ model, el: root }) {
  // The page's address: the API lets a browser post only from pages it was told about, and
  // the ticket is minted for this one.
  model.set("origin", window.location.origin);
  model.save_changes();

  let files = []; // File objects by index: they never leave this page except to the API
  const thumbs = new Map(); // index -> its tile, drawn once
  let records = [];
  let shown = RECORDS_SHOWN;
  let photoTypes = [];
  const inFlight = new Map(); // job -> {loaded, bytes}
  let sentBytes = 0;
  let totalBytes = 0;
  let jobsTotal = 0;
  let jobsAccepted = 0; // answered 202: the server holds them, whatever the kernel says next

  const input = el("input", {
    type: "file",
    multiple: "",
    accept: model.get("accept"),
    style: "display:none",
  });
  const choose = el("button", { class: "sb-upload sb-primary", text: "Choose photos" });
  const clear = el("button", { class: "sb-clear", text: "Clear" });
  const send = el("button", { class: "sb-send sb-primary", text: "Send for reading" });
  const status = el("span", { class: "sb-status" });
  const progress = el("progress", { class: "sb-bytes", max: "1", value: "0" });
  const progressText = el("span", { class: "sb-bytes-text" });
  const sending = el("div", { class: "sb-sending" }, progress, progressText);
  const list = el("div", { class: "sb-records" });
  root.append(
    el("style", { text: STYLE }),
    el("div", { class: "sb-uploader" },
      el("div", { class: "sb-bar" }, choose, clear, send, status),
      sending,
      list,
      input,
    ),
  );

  function syncButtons() {
    const busy = model.get("busy");
    choose.disabled = busy;
    clear.disabled = busy || files.length === 0;
    send.disabled = busy || records.length === 0;
  }

  choose.addEventListener("click", () => input.click());
  clear.addEventListener("click", () => {
    files = [];
    thumbs.clear();
    records = [];
    input.value = "";
    list.replaceChildren();
    sending.style.display = "none";
    status.textContent = "";
    model.send({ kind: "clear" });
    syncButtons();
  });
  send.addEventListener("click", () => model.send({ kind: "send" }));

  input.addEventListener("change", async () => {
    const chosen = [...input.files];
    if (chosen.length === 0) return;
    files = chosen;
    thumbs.clear();
    records = [];
    shown = RECORDS_SHOWN;
    list.replaceChildren();
    sending.style.display = "none";
    syncButtons();
    status.textContent = `Reading the dates of ${chosen.length} photo(s) …`;
    const lib = await exifr(model);
    const headBytes = model.get("head_bytes");
    model.send({ kind: "start", count: chosen.length });
    for (let start = 0; start < chosen.length; start += META_CHUNK) {
      const part = chosen.slice(start, start + META_CHUNK);
      const photos = await mapLimited(part, META_PARALLEL, (file, i) =>
        describe(lib, file, start + i, headBytes),
      );
      if (files !== chosen) return; // another selection replaced this one meanwhile
      model.send({ kind: "photos", photos, last: start + META_CHUNK >= chosen.length });
    }
    status.textContent = "";
  });

  // -- thumbnails: drawn when a tile first comes into view, one at a time --------------------

  const queue = [];
  let drawing = false;
  const seen = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (entry.isIntersecting) {
        seen.unobserve(entry.target);
        queue.push(entry.target);
      }
    }
    drawNext();
  });

  async function drawNext() {
    if (drawing) return;
    drawing = true;
    while (queue.length) {
      const tile = queue.shift();
      const file = files[Number(tile.dataset.index)];
      if (!file || tile.dataset.drawn) continue;
      tile.dataset.drawn = "1";
      try {
        // Decoded straight to thumbnail size; the full picture never stays in memory.
        const bitmap = await createImageBitmap(file, {
          resizeWidth: THUMB_PX * 2,
          resizeQuality: "low",
        });
        const canvas = el("canvas");
        const scale = Math.min(1, (THUMB_PX * 2) / bitmap.width);
        canvas.width = Math.round(bitmap.width * scale);
        canvas.height = Math.round(bitmap.height * scale);
        canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
        bitmap.close();
        tile.replaceChildren(canvas);
        tile.classList.add("sb-drawn");
      } catch (_err) {
        // HEIC (chromium cannot decode it) or no picture at all: the tile keeps its name
        // and time; the kernel's checks say whether the server takes the file.
        tile.classList.add("sb-undrawn");
      }
    }
    drawing = false;
  }

  function tileFor(photo) {
    let tile = thumbs.get(photo.index);
    if (!tile) {
      // Until drawn (and for good when the browser cannot draw it, as HEIC in chromium): the
      // file's name and capture time, which is what grouping by time goes by.
      const when = photo.taken ? photo.taken.replace("T", "\n") : "no capture time";
      tile = el("div", { class: "sb-thumb", "data-index": String(photo.index) },
        el("span", { text: `${photo.name}\n${when}` }));
      thumbs.set(photo.index, tile);
      seen.observe(tile);
    }
    return tile;
  }

  // -- records, as the kernel grouped them ----------------------------------------------------

  function move(index, to) {
    model.send({ kind: "move", photo: index, to });
  }

  function photoFigure(record, photo, count) {
    const typeSelect = el("select", { class: "sb-type", title: "Photo type" });
    for (const type of new Set([photo.type, ...photoTypes])) {
      const option = el("option", { value: type, text: type.replace(/_/g, " ") });
      if (type === photo.type) option.selected = true;
      typeSelect.append(option);
    }
    typeSelect.addEventListener("change", () =>
      model.send({ kind: "type", photo: photo.index, type: typeSelect.value }),
    );
    const prev = el("button", {
      class: "sb-move-prev",
      title: "Move this photo to the record before",
      text: "◀",
    });
    const fresh = el("button", {
      class: "sb-move-new",
      title: "Start a new record with this photo",
      text: "+",
    });
    const next = el("button", {
      class: "sb-move-next",
      title: "Move this photo to the record after",
      text: "▶",
    });
    prev.disabled = record.number === 1;
    fresh.disabled = count === 1;
    next.disabled = record.number === records.length && count === 1;
    prev.addEventListener("click", () => move(photo.index, "previous"));
    fresh.addEventListener("click", () => move(photo.index, "new"));
    next.addEventListener("click", () => move(photo.index, "next"));
    return el(
      "figure",
      { class: "sb-photo", "data-index": String(photo.index), title: photo.name },
      tileFor(photo),
      el("figcaption", { text: photo.name }),
      typeSelect,
      el("div", { class: "sb-move" }, prev, fresh, next),
    );
  }

  function contextInput(record, key, label) {
    const box = el("input", {
      type: "text",
      placeholder: `${label} (optional)`,
    });
    box.value = (record.context && record.context[key]) || "";
    box.addEventListener("input", () =>
      model.send({ kind: "context", record: record.number, key, value: box.value }),
    );
    // The class names the record and the field, as the page's tests find them.
    return el("span", { class: `sb-context-${record.number}-${key}` }, box);
  }

  function recordBox(record) {
    const photos = record.photos.map((p) => photoFigure(record, p, record.photos.length));
    const labels = model.get("context_labels");
    return el(
      "div",
      { class: "sb-record", "data-record": String(record.number) },
      el("div", {
        class: "sb-record-title",
        text: `Record ${record.number} · ${record.photos.length} photo(s)`,
      }),
      el("div", { class: "sb-record-photos" }, ...photos),
      el("div", { class: "sb-context" },
        ...Object.entries(labels).map(([key, label]) => contextInput(record, key, label))),
    );
  }

  function showRecords() {
    const boxes = records.slice(0, shown).map(recordBox);
    if (records.length > shown) {
      const more = el("button", {
        class: "sb-more",
        text: `Show all ${records.length} records (${records.length - shown} more)`,
      });
      more.addEventListener("click", () => {
        shown = records.length;
        showRecords();
      });
      boxes.push(more);
    }
    list.replaceChildren(...boxes);
    syncButtons();
  }

  // -- sending: one POST per job, with the job's own ticket --------------------------------

  function drawProgress() {
    let loaded = sentBytes;
    for (const job of inFlight.values()) loaded += job.loaded;
    progress.max = Math.max(totalBytes, 1);
    progress.value = Math.min(loaded, totalBytes);
    progressText.textContent =
      `${megabytes(loaded, unitOf(totalBytes))} of ${megabytes(totalBytes)} ` +
      `${unitOf(totalBytes)} sent; ` +
      `${jobsAccepted} of ${jobsTotal} job(s) received by the server` +
      (inFlight.size ? ` (${inFlight.size} on the way)` : "");
    sending.dataset.accepted = String(jobsAccepted);
  }

  function post(job) {
    const form = new FormData();
    for (const index of job.files) form.append("images", files[index], files[index].name);
    form.append("manifest", job.manifest);
    if (job.mode === "backlog") form.append("mode", "backlog");
    const xhr = new XMLHttpRequest();
    const state = { loaded: 0, bytes: job.bytes };
    inFlight.set(job.job, state);
    xhr.open("POST", job.url);
    xhr.setRequestHeader("Authorization", `Bearer ${job.ticket}`);
    xhr.upload.addEventListener("progress", (e) => {
      // The body also carries the multipart envelope: count the photos' share of it.
      state.loaded = e.total ? Math.round((e.loaded / e.total) * job.bytes) : 0;
      drawProgress();
    });
    function done(answer) {
      inFlight.delete(job.job);
      sentBytes += job.bytes;
      drawProgress();
      model.send({ kind: "sent", job: job.job, ...answer });
    }
    xhr.addEventListener("load", () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch (_err) {
        body = null;
      }
      if (xhr.status === 202 && body && body.jobId) {
        jobsAccepted += 1;
        done({ jobId: body.jobId, totalItems: body.totalItems });
      } else {
        const message =
          (body && body.message) || `the server answered ${xhr.status} ${xhr.statusText}`;
        done({ status: xhr.status, error: message });
      }
    });
    xhr.addEventListener("error", () =>
      done({
        status: 0,
        error:
          `the browser could not send it to ${new URL(job.url).origin}: the network failed, ` +
          "a photo changed or moved on disk since it was chosen (choose it again), or the " +
          "server does not let this page send (see SCANBATCH_PAGE_ORIGINS)",
      }),
    );
    xhr.send(form);
  }

  model.on("msg:custom", (msg) => {
    if (msg.kind === "records") {
      records = msg.records;
      photoTypes = msg.photo_types || photoTypes;
      showRecords();
    } else if (msg.kind === "sending") {
      totalBytes = msg.bytes;
      sentBytes = 0;
      jobsTotal = msg.jobs;
      jobsAccepted = 0;
      // Which send the figures are of (benchmarks wait for this send's, not the last one's).
      sending.dataset.sends = String(Number(sending.dataset.sends || 0) + 1);
      inFlight.clear();
      sending.style.display = "flex";
      drawProgress();
    } else if (msg.kind === "job") {
      post(msg);
    } else if (msg.kind === "sent-all") {
      if (msg.clear) {
        files = [];
        thumbs.clear();
        records = [];
        input.value = "";
        list.replaceChildren();
      }
      drawProgress();
      syncButtons();
    }
  });
  model.on("change:busy", syncButtons);
  syncButtons();
  return () => seen.disconnect();
}

export default { render };

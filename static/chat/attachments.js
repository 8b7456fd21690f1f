// Files in the composer and in sent messages.
//
// The tray: the attach button (a hidden file input), drag-and-drop onto the composer and
// paste from the clipboard each upload files at once (XHR, so the chip shows upload
// progress) to POST /api/chat/files. A chip shows the file's name, size and progress, an
// image's thumbnail once uploaded, and the server's reason when the upload was refused;
// its × removes it (an upload is aborted, an uploaded file deleted). Sent messages show
// their files: images as thumbnails that open full size in an overlay, other files as
// download links. Images are shown from /api/chat/files/{id}/content (same origin), so the
// page's CSP needs no blob: source.
import { csrfToken } from "../site/http.js";
import { el } from "./dom.js";

const FILES_URL = "/api/chat/files";

export function contentUrl(id) {
  return `${FILES_URL}/${encodeURIComponent(id)}/content`;
}

export function isImage(mimeType) {
  return ["image/png", "image/jpeg", "image/gif", "image/webp"].includes(mimeType);
}

export function formatSize(bytes) {
  const value = Number(bytes) || 0;
  if (value < 1024) return `${value} B`;
  if (value < 1024 * 1024) return `${(value / 1024).toFixed(1)} KB`;
  return `${(value / (1024 * 1024)).toFixed(1)} MB`;
}

// The server's reason for a refused upload (its `detail`), or a plain fallback.
function refusal(xhr) {
  try {
    const body = JSON.parse(xhr.responseText || "null");
    if (body && typeof body.detail === "string" && body.detail) return body.detail;
    if (body && Array.isArray(body.file) && body.file.length) return String(body.file[0]);
  } catch {
    // not JSON: fall through
  }
  if (xhr.status === 0) return "Could not reach the server. Check your connection and try again.";
  return `The upload failed (HTTP ${xhr.status}).`;
}

// ---- the composer's tray -------------------------------------------------------------------------

export class AttachmentTray {
  constructor({ form, input, tray, button, fileInput, onChange = () => {} }) {
    this.form = form;
    this.tray = tray;
    this.fileInput = fileInput;
    this.onChange = onChange;
    this.items = []; // {key, file, name, size, state: uploading|ready|error, progress, error, meta, xhr}
    this.nextKey = 0;
    button.addEventListener("click", () => fileInput.click());
    fileInput.addEventListener("change", () => {
      this.add([...fileInput.files]);
      fileInput.value = "";
    });
    form.addEventListener("dragover", (event) => {
      if (!event.dataTransfer || ![...event.dataTransfer.types].includes("Files")) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
      form.classList.add("is-dropping");
    });
    form.addEventListener("dragleave", (event) => {
      if (!form.contains(event.relatedTarget)) form.classList.remove("is-dropping");
    });
    form.addEventListener("drop", (event) => {
      form.classList.remove("is-dropping");
      const files = event.dataTransfer ? [...event.dataTransfer.files] : [];
      if (!files.length) return;
      event.preventDefault();
      this.add(files);
    });
    input.addEventListener("paste", (event) => {
      const files = event.clipboardData ? [...event.clipboardData.files] : [];
      if (!files.length) return;
      event.preventDefault();
      this.add(files.map((file, index) => (file.name ? file : new File([file], `pasted-${index + 1}.png`, { type: file.type }))));
    });
  }

  add(files) {
    for (const file of files) {
      const item = { key: (this.nextKey += 1), file, name: file.name || "file", size: file.size, state: "uploading", progress: 0 };
      this.items.push(item);
      this.upload(item);
    }
    this.render();
  }

  upload(item) {
    const xhr = new XMLHttpRequest();
    item.xhr = xhr;
    xhr.open("POST", FILES_URL);
    xhr.setRequestHeader("X-CSRFToken", csrfToken());
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", (event) => {
      if (!event.lengthComputable) return;
      item.progress = Math.round((event.loaded / event.total) * 100);
      this.paintProgress(item);
    });
    xhr.addEventListener("load", () => {
      item.xhr = null;
      if (xhr.status === 201) {
        item.state = "ready";
        item.progress = 100;
        item.meta = JSON.parse(xhr.responseText);
      } else {
        item.state = "error";
        item.error = refusal(xhr);
      }
      this.render();
    });
    xhr.addEventListener("error", () => {
      item.xhr = null;
      item.state = "error";
      item.error = refusal(xhr);
      this.render();
    });
    const body = new FormData();
    body.append("file", item.file, item.name);
    xhr.send(body);
  }

  remove(item) {
    this.items = this.items.filter((i) => i !== item);
    if (item.xhr) item.xhr.abort();
    else if (item.state === "ready" && item.meta) {
      fetch(`${FILES_URL}/${item.meta.id}`, { method: "DELETE", credentials: "same-origin", headers: { "X-CSRFToken": csrfToken() } }).catch(() => {});
    }
    this.render();
  }

  // The uploaded files' metadata, in order (what a message sent now carries).
  ready() {
    return this.items.filter((i) => i.state === "ready").map((i) => i.meta);
  }

  get busy() {
    return this.items.some((i) => i.state === "uploading");
  }

  // Take the uploaded files for a message (refused ones stay, showing their reason).
  take() {
    const taken = this.ready();
    this.items = this.items.filter((i) => i.state !== "ready");
    this.render();
    return taken;
  }

  // Put files back after a send failed.
  restore(files) {
    for (const meta of files) {
      this.items.push({ key: (this.nextKey += 1), name: meta.name, size: meta.size_bytes, state: "ready", progress: 100, meta });
    }
    this.render();
  }

  paintProgress(item) {
    const chip = this.tray.querySelector(`[data-key="${item.key}"]`);
    const bar = chip && chip.querySelector("progress");
    if (bar) bar.value = item.progress;
  }

  render() {
    this.tray.replaceChildren(...this.items.map((item) => this.chip(item)));
    this.tray.hidden = this.items.length === 0;
    this.onChange();
  }

  chip(item) {
    const image = item.state === "ready" && item.meta && isImage(item.meta.mime_type);
    const remove = el("button", {
      type: "button",
      class: "chip-remove",
      "aria-label": `Remove ${item.name}`,
      "data-testid": "attachment-remove",
      text: "×",
      onclick: () => this.remove(item),
    });
    return el(
      "li",
      { class: `attachment-chip is-${item.state}`, "data-key": item.key, "data-state": item.state, "data-testid": "attachment-chip" },
      image ? el("img", { class: "attachment-thumb", src: contentUrl(item.meta.id), alt: "", "data-testid": "attachment-thumb" }) : null,
      el(
        "span",
        { class: "attachment-info" },
        el("span", { class: "attachment-name", text: item.name, title: item.name }),
        el("span", { class: "attachment-size muted small", text: formatSize(item.size) }),
        item.state === "uploading"
          ? el("progress", { max: "100", value: String(item.progress), "aria-label": `Uploading ${item.name}`, "data-testid": "attachment-progress" })
          : null,
        item.state === "error" ? el("span", { class: "attachment-error", role: "alert", text: item.error, "data-testid": "attachment-error" }) : null,
      ),
      remove,
    );
  }
}

// ---- files of a sent message ---------------------------------------------------------------------

export function attachmentList(files) {
  const list = el("ul", { class: "msg-attachments", "data-testid": "message-attachments" });
  for (const file of files) {
    const url = contentUrl(file.id);
    if (file.deleted) {
      list.append(el("li", { class: "msg-attachment is-deleted muted small", text: `${file.name} (deleted)` }));
    } else if (isImage(file.mime_type)) {
      list.append(
        el(
          "li",
          { class: "msg-attachment" },
          el(
            "button",
            { type: "button", class: "thumb-button", "aria-label": `Open ${file.name} full size`, "data-full": url, "data-name": file.name },
            el("img", { class: "msg-thumb", src: url, alt: file.name, loading: "lazy", "data-testid": "message-thumb" }),
          ),
        ),
      );
    } else {
      list.append(
        el(
          "li",
          { class: "msg-attachment" },
          el("a", { class: "file-link", href: url, download: file.name, "data-testid": "message-file", text: file.name }),
          el("span", { class: "muted small", text: ` ${formatSize(file.size_bytes)}` }),
        ),
      );
    }
  }
  return list;
}

// One overlay for every thumbnail: the image full size; a click, × or Escape closes it.
export function installLightbox(container) {
  let overlay = null;
  const close = () => {
    if (overlay) overlay.remove();
    overlay = null;
  };
  container.addEventListener("click", (event) => {
    const button = event.target.closest(".thumb-button");
    if (!button) return;
    close();
    overlay = el(
      "div",
      { class: "lightbox", role: "dialog", "aria-label": button.dataset.name, "data-testid": "lightbox", onclick: close },
      el("img", { src: button.dataset.full, alt: button.dataset.name, class: "lightbox-image" }),
      el("button", { type: "button", class: "lightbox-close", "aria-label": "Close", text: "×" }),
    );
    document.body.append(overlay);
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") close();
  });
}

// Drag-and-drop upload for the package page. No framework, no inline code (CSP script-src 'self').
// Each file goes up as its own XHR with the file as the raw body, so the browser reports upload
// progress per file; the server answers with an htmx partial (the file's result), which replaces
// the file's row and then polls until the file is live. Without JavaScript the form posts as is.
(function () {
  "use strict";

  var CONCURRENCY = 3;

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  function fromHtml(html) {
    var template = document.createElement("template");
    template.innerHTML = html.trim();
    return template.content.firstElementChild;
  }

  function row(file) {
    var li = document.createElement("li");
    li.className = "upload-result result-uploading";
    li.setAttribute("data-filename", file.name);
    var name = document.createElement("span");
    name.className = "result-name";
    name.textContent = file.name;
    var bar = document.createElement("progress");
    bar.max = 1;
    bar.value = 0;
    bar.setAttribute("aria-label", "Upload progress of " + file.name);
    var state = document.createElement("span");
    state.className = "state state-queued";
    state.textContent = "Queued";
    li.append(name, bar, state);
    return li;
  }

  function fail(li, message) {
    li.className = "upload-result result-error";
    var state = li.querySelector(".state");
    state.className = "state state-rejected";
    state.textContent = "Rejected";
    var bar = li.querySelector("progress");
    if (bar) bar.remove();
    var text = document.createElement("span");
    text.className = "result-message";
    text.textContent = message;
    li.append(text);
  }

  function send(url, file, li, done) {
    var xhr = new XMLHttpRequest();
    var bar = li.querySelector("progress");
    var state = li.querySelector(".state");
    xhr.open("POST", url);
    xhr.setRequestHeader("X-CSRFToken", csrfToken());
    xhr.setRequestHeader("HX-Request", "true");
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    state.className = "state state-uploading";
    state.textContent = "Uploading";
    xhr.upload.addEventListener("progress", function (event) {
      if (event.lengthComputable) bar.value = event.loaded / event.total;
    });
    xhr.addEventListener("load", function () {
      var html = xhr.getResponseHeader("Content-Type") || "";
      if ((xhr.status === 201 || xhr.status === 400) && html.indexOf("text/html") === 0) {
        var result = fromHtml(xhr.responseText);
        if (result) {
          li.replaceWith(result);
          if (window.htmx) window.htmx.process(result);
        }
      } else if (xhr.status === 413) {
        fail(li, "The file is larger than the server accepts.");
      } else if (xhr.status === 403) {
        fail(li, "You may not upload to this index (or your session expired: reload the page).");
      } else {
        fail(li, "Upload failed (HTTP " + xhr.status + ").");
      }
      done();
    });
    xhr.addEventListener("error", function () {
      fail(li, "The connection was lost; nothing was stored. Try again.");
      done();
    });
    xhr.send(file);
  }

  function setUp(form) {
    var input = form.querySelector('input[type="file"]');
    var target = form.querySelector(".drop-target");
    var results = document.querySelector(form.getAttribute("data-results"));
    var queue = [];
    var running = 0;
    form.classList.add("js-upload");

    function next() {
      while (running < CONCURRENCY && queue.length) {
        var job = queue.shift();
        running += 1;
        var url = form.getAttribute("data-upload-url") + "?filename=" + encodeURIComponent(job.file.name);
        send(url, job.file, job.li, function () {
          running -= 1;
          if (!queue.length && !running) document.body.dispatchEvent(new CustomEvent("packages-changed"));
          next();
        });
      }
    }

    function add(files) {
      Array.prototype.forEach.call(files, function (file) {
        var li = row(file);
        results.prepend(li);
        queue.push({ file: file, li: li });
      });
      next();
    }

    ["dragenter", "dragover"].forEach(function (name) {
      form.addEventListener(name, function (event) {
        event.preventDefault();
        target.classList.add("dragging");
      });
    });
    ["dragleave", "dragend"].forEach(function (name) {
      form.addEventListener(name, function () { target.classList.remove("dragging"); });
    });
    form.addEventListener("drop", function (event) {
      event.preventDefault();
      target.classList.remove("dragging");
      if (event.dataTransfer && event.dataTransfer.files.length) add(event.dataTransfer.files);
    });
    target.addEventListener("click", function (event) {
      if (event.target.tagName !== "LABEL") input.click();
    });
    target.addEventListener("keydown", function (event) {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        input.click();
      }
    });
    input.addEventListener("change", function () {
      add(input.files);
      input.value = "";
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (input.files.length) add(input.files);
    });
  }

  function init() {
    var form = document.getElementById("upload-form");
    if (form) setUp(form);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();

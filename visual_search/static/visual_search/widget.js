/* Search-by-photo widget: preview, drag and drop, paste, and results without a page reload.
 * Without this script the form still posts to the server-rendered search page. No dependencies. */
(function () {
  "use strict";

  function setField(card, name, value) {
    card.querySelectorAll('[data-vs-field="' + name + '"]').forEach(function (el) {
      if (el.tagName === "A") { el.href = value || "#"; return; }
      if (el.tagName === "IMG") {
        if (value) { el.src = value; } else { el.removeAttribute("src"); el.classList.add("vs-no-image"); }
        return;
      }
      if (el.dataset.vsFormat === "percent" && typeof value === "number") {
        el.textContent = Math.round(value * 100) + "% match";
        return;
      }
      el.textContent = value === null || value === undefined ? "" : String(value);
    });
  }

  function Widget(root) {
    this.root = root;
    this.form = root.querySelector("form");
    this.inputs = root.querySelectorAll('input[type="file"]');
    this.preview = root.querySelector("[data-vs-preview]");
    this.status = root.querySelector("[data-vs-status]");
    this.results = root.querySelector("[data-vs-results]");
    this.template = root.querySelector("template[data-vs-card-template]");
    this.apiUrl = this.form.dataset.apiUrl;
    this.maxBytes = parseInt(this.form.dataset.maxBytes, 10) || 0;
    this.file = null;
    this.bind();
  }

  Widget.prototype.bind = function () {
    var self = this;
    root_reveal(this.root);
    this.inputs.forEach(function (input) {
      input.addEventListener("change", function () {
        if (input.files && input.files[0]) { self.choose(input.files[0]); }
      });
    });
    var drop = this.root.querySelector("[data-vs-drop]");
    ["dragenter", "dragover"].forEach(function (name) {
      drop.addEventListener(name, function (event) {
        event.preventDefault();
        drop.classList.add("vs-dragging");
      });
    });
    ["dragleave", "drop"].forEach(function (name) {
      drop.addEventListener(name, function () { drop.classList.remove("vs-dragging"); });
    });
    drop.addEventListener("drop", function (event) {
      event.preventDefault();
      var files = event.dataTransfer && event.dataTransfer.files;
      if (files && files[0]) { self.choose(files[0]); }
    });
    document.addEventListener("paste", function (event) {
      var items = (event.clipboardData && event.clipboardData.items) || [];
      for (var i = 0; i < items.length; i++) {
        if (items[i].kind === "file" && items[i].type.indexOf("image/") === 0) {
          self.choose(items[i].getAsFile());
          event.preventDefault();
          return;
        }
      }
    });
    this.form.addEventListener("submit", function (event) {
      if (!self.apiUrl || !window.fetch || !window.FormData) { return; } // plain form post
      event.preventDefault();
      self.search();
    });
  };

  function root_reveal(root) {
    root.querySelectorAll(".vs-js-only").forEach(function (el) { el.hidden = false; });
    root.classList.add("vs-has-js");
  }

  Widget.prototype.say = function (message, isError) {
    this.status.textContent = "";
    var span = document.createElement("span");
    if (isError) { span.className = "vs-error"; }
    span.textContent = message;
    this.status.appendChild(span);
  };

  Widget.prototype.choose = function (file) {
    if (!file) { return; }
    if (file.type && file.type.indexOf("image/") !== 0) {
      this.say("That file is not an image; choose a JPEG, PNG or WebP photo.", true);
      return;
    }
    if (this.maxBytes && file.size > this.maxBytes) {
      this.say("That photo is larger than " + this.form.dataset.maxMb + " MB; choose a smaller one.", true);
      return;
    }
    this.file = file;
    if (this.preview && window.URL && URL.createObjectURL) {
      if (this.preview.dataset.url) { URL.revokeObjectURL(this.preview.dataset.url); }
      this.preview.dataset.url = URL.createObjectURL(file);
      this.preview.src = this.preview.dataset.url;
      this.preview.hidden = false;
    }
    this.search();
  };

  Widget.prototype.formData = function () {
    var data = new FormData();
    this.form.querySelectorAll('input[type="hidden"]').forEach(function (input) {
      data.append(input.name, input.value);
    });
    data.append("image", this.file, this.file.name || "photo.jpg");
    return data;
  };

  Widget.prototype.search = function () {
    var self = this;
    if (!this.file) {
      this.say("Choose or take a photo first.", true);
      this.inputs[this.inputs.length - 1].focus();
      return;
    }
    var token = this.form.querySelector('input[name="csrfmiddlewaretoken"]');
    this.say("Searching…");
    this.results.setAttribute("aria-busy", "true");
    this.root.classList.add("vs-busy");
    fetch(this.apiUrl, {
      method: "POST",
      body: this.formData(),
      headers: token ? { "X-CSRFToken": token.value, "Accept": "application/json" } : { "Accept": "application/json" },
      credentials: "same-origin"
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (body) {
        if (!response.ok) {
          throw new Error(body.detail || "The search failed (" + response.status + "); please try again.");
        }
        return body;
      });
    }).then(function (body) {
      self.render(body.results || [], body.confident !== false);
    }).catch(function (error) {
      self.say(error.message || "The search failed; check your connection and try again.", true);
    }).then(function () {
      self.results.setAttribute("aria-busy", "false");
      self.root.classList.remove("vs-busy");
    });
  };

  Widget.prototype.render = function (results, confident) {
    this.results.textContent = "";
    var count = document.createElement("p");
    count.className = "vs-count";
    if (!results.length) {
      count.textContent = "Nothing looks like that photo. Try another angle, or a photo with the product filling the frame.";
      this.results.appendChild(count);
      this.say("No results.");
      return;
    }
    if (confident) {
      count.textContent = results.length + (results.length === 1 ? " result" : " results") + ", best match first.";
    } else {
      count.className += " vs-unsure";
      count.textContent = "No confident match. Possible matches, best first:";
    }
    var list = document.createElement("ol");
    list.className = "vs-grid";
    list.setAttribute("data-vs-list", "");
    var self = this;
    results.forEach(function (result) {
      var card = self.template.content.firstElementChild.cloneNode(true);
      Object.keys(result).forEach(function (name) { setField(card, name, result[name]); });
      var img = card.querySelector("img");
      if (img) { img.alt = ""; }
      list.appendChild(card);
    });
    this.results.appendChild(count);
    this.results.appendChild(list);
    this.say(results.length + (results.length === 1 ? " result found" : " results found") + (confident ? "." : "; no confident match."));
  };

  function init() {
    document.querySelectorAll("[data-vs-widget]").forEach(function (root) {
      if (!root.vsWidget) { root.vsWidget = new Widget(root); }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();

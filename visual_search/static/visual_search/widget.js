/* Search-by-photo widget: preview, drag and drop, paste, and results without a page reload.
 * Two modes: "inline" (the form, results below it) and "compact" (a camera button opening a <dialog>).
 * Without this script the form still posts to the server-rendered search page, and the compact
 * button is a link to that page. No dependencies. Loaded once per widget: it sets itself up once. */
(function () {
  "use strict";
  if (window.visualSearchWidget) { window.visualSearchWidget.init(); return; }

  var widgets = [];
  // Fallbacks when a widget's data-vs-messages is missing (an old overridden widget.html).
  var MESSAGES = {
    required: "Choose a photo first.",
    network: "The search did not reach the shop. Check your connection and try again.",
    failed: "The search did not work this time. Please try again.",
    searching: "Searching…",
    none: "Nothing looks like that photo. Try another angle, or a photo with the product filling the frame.",
    unsure: "No confident match. Possible matches, best first."
  };
  // Fields a card shows its own way (price with currency, "Out of stock"), not as plain text.
  var SPECIAL = { price: true, available: true };

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

  function fillCard(card, result) {
    Object.keys(result).forEach(function (name) {
      if (!SPECIAL[name]) { setField(card, name, result[name]); }
    });
    var price = result.price;
    var hasPrice = price !== null && price !== undefined && price !== "";
    card.querySelectorAll('[data-vs-field="price"]').forEach(function (el) {
      var currency = result.currency || el.dataset.vsCurrency || "";
      el.textContent = hasPrice ? String(price) + (currency ? " " + currency : "") : "";
      el.hidden = !hasPrice;
    });
    card.querySelectorAll('[data-vs-field="available"]').forEach(function (el) {
      el.hidden = result.available !== false;
    });
    var img = card.querySelector("img");
    if (img) { img.alt = ""; }
    return card;
  }

  function Widget(root) {
    this.root = root;
    this.mode = root.dataset.vsMode || "inline";
    this.form = root.querySelector("form");
    this.inputs = root.querySelectorAll('input[type="file"]');
    this.preview = root.querySelector("[data-vs-preview]");
    this.status = root.querySelector("[data-vs-status]");
    this.results = root.querySelector("[data-vs-results]");
    this.template = root.querySelector("template[data-vs-card-template]");
    this.dialog = root.querySelector("dialog[data-vs-dialog]");
    this.opener = root.querySelector("[data-vs-open]");
    this.apiUrl = this.form.dataset.apiUrl;
    this.maxBytes = parseInt(this.form.dataset.maxBytes, 10) || 0;
    this.messages = MESSAGES;
    try {
      var own = JSON.parse(root.dataset.vsMessages || "{}");
      this.messages = Object.assign({}, MESSAGES, own);
    } catch (error) { /* keep the fallbacks */ }
    this.file = null;
    this.bind();
    this.bindDialog();
  }

  Widget.prototype.bind = function () {
    var self = this;
    this.root.querySelectorAll(".vs-js-only").forEach(function (el) { el.hidden = false; });
    this.root.classList.add("vs-has-js");
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
    this.form.addEventListener("submit", function (event) {
      if (!self.apiUrl || !window.fetch || !window.FormData) { return; } // plain form post
      event.preventDefault();
      self.search();
    });
  };

  // Compact mode: the link becomes a button that opens the dialog; Esc, the close button and a
  // click on the backdrop close it, and the focus goes back to the button.
  Widget.prototype.bindDialog = function () {
    var self = this, dialog = this.dialog, opener = this.opener;
    if (!dialog || !opener || typeof dialog.showModal !== "function") { return; } // stays a link
    opener.setAttribute("role", "button");
    opener.setAttribute("aria-haspopup", "dialog");
    opener.setAttribute("aria-controls", dialog.id);
    opener.setAttribute("aria-expanded", "false");
    opener.addEventListener("click", function (event) {
      event.preventDefault();
      self.open();
    });
    opener.addEventListener("keydown", function (event) {
      if (event.key === " " || event.key === "Spacebar") { event.preventDefault(); self.open(); }
    });
    dialog.querySelectorAll("[data-vs-close]").forEach(function (button) {
      button.addEventListener("click", function () { dialog.close(); });
    });
    dialog.addEventListener("click", function (event) {
      if (event.target === dialog) { dialog.close(); } // the backdrop: the body fills the dialog
    });
    dialog.addEventListener("close", function () {
      opener.setAttribute("aria-expanded", "false");
      opener.focus();
    });
    // Results rendered by the server for this widget (no API): show them.
    if (this.root.hasAttribute("data-vs-searched")) { this.open(); }
  };

  Widget.prototype.open = function () {
    if (!this.dialog || this.dialog.open) { return; }
    this.dialog.showModal();
    this.opener.setAttribute("aria-expanded", "true");
    this.inputs[this.inputs.length - 1].focus();
  };

  // Which widget a pasted photo is for: the open dialog's, else the one holding the focus, else
  // the first inline widget on the page. Never several.
  function pasteTarget() {
    var active = document.activeElement;
    var i;
    for (i = 0; i < widgets.length; i++) {
      if (widgets[i].dialog && widgets[i].dialog.open) { return widgets[i]; }
    }
    for (i = 0; i < widgets.length; i++) {
      if (active && widgets[i].root.contains(active) && widgets[i].mode !== "compact") { return widgets[i]; }
    }
    for (i = 0; i < widgets.length; i++) {
      if (widgets[i].mode !== "compact") { return widgets[i]; }
    }
    return null;
  }

  document.addEventListener("paste", function (event) {
    var target = pasteTarget();
    var items = (event.clipboardData && event.clipboardData.items) || [];
    if (!target) { return; }
    for (var i = 0; i < items.length; i++) {
      if (items[i].kind === "file" && items[i].type.indexOf("image/") === 0) {
        target.choose(items[i].getAsFile());
        event.preventDefault();
        return;
      }
    }
  });

  Widget.prototype.say = function (message, isError) {
    this.status.textContent = "";
    var span = document.createElement("span");
    if (isError) { span.className = "vs-error"; }
    span.textContent = message;
    this.status.appendChild(span);
  };

  // The customer's words for an API error: by its stable code, never the developer's detail,
  // except where the detail names what to do with this very file (a format, a size).
  Widget.prototype.errorMessage = function (body, status) {
    var code = body && body.code;
    if (code && code !== "unsupported_format" && this.messages[code]) { return this.messages[code]; }
    if (status === 429) { return this.messages.throttled || this.messages.failed; }
    if (code === "unsupported_format" && body.detail) { return body.detail; }
    return this.messages.failed;
  };

  Widget.prototype.choose = function (file) {
    if (!file) { return; }
    if (file.type && file.type.indexOf("image/") !== 0) {
      this.say(this.messages.invalid_image || "That file is not an image; choose a JPEG, PNG or WebP photo.", true);
      return;
    }
    if (this.maxBytes && file.size > this.maxBytes) {
      this.say(this.messages.file_too_large || "That photo is larger than " + this.form.dataset.maxMb + " MB; choose a smaller one.", true);
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
      if (!input.hasAttribute("data-vs-page-only")) { data.append(input.name, input.value); }
    });
    data.append("image", this.file, this.file.name || "photo.jpg");
    return data;
  };

  Widget.prototype.search = function () {
    var self = this;
    if (!this.file) {
      this.say(this.messages.required, true);
      this.inputs[this.inputs.length - 1].focus();
      return;
    }
    var token = this.form.querySelector('input[name="csrfmiddlewaretoken"]');
    this.say(this.messages.searching);
    this.results.setAttribute("aria-busy", "true");
    this.root.classList.add("vs-busy");
    fetch(this.apiUrl, {
      method: "POST",
      body: this.formData(),
      headers: token ? { "X-CSRFToken": token.value, "Accept": "application/json" } : { "Accept": "application/json" },
      credentials: "same-origin"
    }).catch(function () {
      throw new Error(self.messages.network);
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (body) {
        if (!response.ok) { throw new Error(self.errorMessage(body, response.status)); }
        return body;
      });
    }).then(function (body) {
      self.render(body.results || [], body.confident !== false);
    }).catch(function (error) {
      self.say(error.message || self.messages.failed, true);
    }).then(function () {
      self.results.setAttribute("aria-busy", "false");
      self.root.classList.remove("vs-busy");
    });
  };

  // One status line says what the results are; the list below holds only the cards.
  Widget.prototype.render = function (results, confident) {
    this.results.textContent = "";
    if (!results.length) {
      this.say(this.messages.none);
      return;
    }
    var list = document.createElement("ol");
    list.className = "vs-grid" + (confident ? "" : " vs-unsure");
    list.setAttribute("data-vs-list", "");
    var self = this;
    results.forEach(function (result) {
      list.appendChild(fillCard(self.template.content.firstElementChild.cloneNode(true), result));
    });
    this.results.appendChild(list);
    if (confident) {
      this.say(results.length + (results.length === 1 ? " result" : " results") + ", best match first.");
    } else {
      this.say(this.messages.unsure);
    }
  };

  function init() {
    document.querySelectorAll("[data-vs-widget]").forEach(function (root) {
      if (!root.vsWidget) {
        root.vsWidget = new Widget(root);
        widgets.push(root.vsWidget);
      }
    });
  }

  window.visualSearchWidget = { init: init };
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();

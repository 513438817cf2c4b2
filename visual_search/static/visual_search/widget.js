/* Search-by-photo widget: preview, drag and drop, paste, and results without a page reload; a box
 * over the preview (mouse, finger, keyboard) chooses the part of the photo to search.
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
    unsupported_format: "{format} files are not accepted here. Choose a JPEG, PNG or WebP photo.",
    searching: "Searching…",
    slow: "Still searching… A slow connection can take a minute.",
    timeout: "The shop did not answer in time. Your photo is kept: try again.",
    retry: "Try again",
    uploading: "Sending your photo",
    offline: "You are offline. The search starts again when you are back online.",
    none: "Nothing looks like that photo. Try another angle, or a photo with the product filling the frame.",
    unsure: "No confident match. Possible matches, best first.",
    results: {},
    result: "{count} result, best match first.",
    results_other: "{count} results, best match first.",
    match: "{percent}% match",
    box_whole: "The box covers the whole photo.",
    box_where: "The box covers {x0} to {x1} across and {y0} to {y1} down the photo.",
    box_across: "{x0} to {x1} across",
    box_down: "{y0} to {y1} down",
    percent: "{n}%"
  };
  // The server's words (in the page's language) have {name} holes the script fills in.
  function format(text, values) {
    return String(text).replace(/\{(\w+)\}/g, function (hole, name) {
      return Object.prototype.hasOwnProperty.call(values, name) ? String(values[name]) : hole;
    });
  }
  // Fields a card shows its own way (price with currency, "Out of stock"), not as plain text.
  var SPECIAL = { price: true, price_display: true, available: true };

  function setField(card, name, value, messages) {
    card.querySelectorAll('[data-vs-field="' + name + '"]').forEach(function (el) {
      if (el.tagName === "A") {
        // No page for it (a model without get_absolute_url): a card, not a link that leads nowhere.
        if (value) { el.href = value; } else { el.removeAttribute("href"); }
        return;
      }
      if (el.tagName === "IMG") {
        if (value) { el.src = value; } else { el.removeAttribute("src"); el.classList.add("vs-no-image"); }
        return;
      }
      if (el.dataset.vsFormat === "percent" && typeof value === "number") {
        var percent = Math.round(value * 100);
        // A chance above 0 that rounds to 0 reads "<1% match": a possible match is not a certain miss.
        el.textContent = format(messages.match, { percent: percent === 0 && value > 0 ? "<1" : percent });
        return;
      }
      el.textContent = value === null || value === undefined ? "" : String(value);
    });
  }

  // A price written as the shop's Django writes it (django.utils.numberformat): the decimals of its
  // currency (the server's table, results.CURRENCY_DECIMALS: 0 for JPY, 3 for KWD; else two), the
  // language's decimal separator, and its thousands grouped only where the shop groups them.
  function number(value, shape, currency) {
    shape = shape || {};
    var exceptions = shape.currency_decimals || {};
    var code = typeof currency === "string" ? currency.trim().toUpperCase() : "";
    var decimals = Object.prototype.hasOwnProperty.call(exceptions, code) ? exceptions[code] : 2;
    var digits = fixed(Math.abs(value), decimals);
    var parts = digits.split(".");
    var whole = shape.grouping && shape.thousands ? grouped(parts[0], shape.grouping, shape.thousands) : parts[0];
    return (value < 0 && /[1-9]/.test(digits) ? "-" : "") + whole + (parts.length > 1 ? (shape.decimal || ".") + parts[1] : "");
  }

  // A price rounded half up on the digits the JSON wrote, as the server's widget.rounded does:
  // 1098.9 yen is 1099 and 1.005 is 1.01 (toFixed alone rounds the binary fraction: 1.005 is 1.00).
  function fixed(value, decimals) {
    var text = String(value);
    if (/e/.test(text) || value >= 1e15) { return value.toFixed(decimals); }
    return Number(Math.round(Number(text + "e" + decimals)) + "e-" + decimals).toFixed(decimals);
  }

  // Django's grouping: a size repeated, or sizes from the right ([3, 2, 0]: 0 repeats the last).
  function grouped(digits, grouping, separator) {
    var intervals = typeof grouping === "number" ? [grouping, 0] : grouping.slice();
    var active = intervals.shift(), out = "", count = 0;
    for (var i = digits.length - 1; i >= 0; i--) {
      if (count && count === active) {
        if (intervals.length) { active = intervals.shift() || active; }
        out = separator + out;
        count = 0;
      }
      out = digits.charAt(i) + out;
      count++;
    }
    return out;
  }

  function fillCard(card, result, messages) {
    Object.keys(result).forEach(function (name) {
      if (!SPECIAL[name]) { setField(card, name, result[name], messages); }
    });
    var price = result.price;
    var hasPrice = price !== null && price !== undefined && price !== "";
    card.querySelectorAll('[data-vs-field="price"]').forEach(function (el) {
      var currency = result.currency || el.dataset.vsCurrency || "";
      // A Decimal price comes as a JSON number (12.9 for 12.90): written as the page writes it, with
      // the decimals of the result's own currency (the page's card knows only that one).
      var text = typeof price === "number" && isFinite(price) ? number(price, messages.number, result.currency) : String(price);
      // The adapter's own text where it gives one (Oscar's "€3.10", as its product page writes it).
      var shown = result.price_display ? String(result.price_display) : text + (currency ? " " + currency : "");
      el.textContent = hasPrice ? shown : "";
      el.hidden = !hasPrice;
    });
    card.querySelectorAll('[data-vs-field="available"]').forEach(function (el) {
      el.hidden = result.available !== false;
    });
    var img = card.querySelector("img");
    if (img) { img.alt = ""; }
    return card;
  }

  // The box over the preview: the part of the photo to search, as fractions (0 to 1) of the photo
  // as it is displayed. Browsers display a JPEG turned by its EXIF orientation (image-orientation:
  // from-image) and the server turns it the same way before cutting the box, so the fractions
  // measured here are the server's.
  //
  // It starts as the whole photo: the first search is then exactly the search without a box
  // (no `box` is sent, so the measured quality holds, and a product filling the frame loses no
  // edge), and a customer whose photo shows more narrows the box when the results show the wrong
  // thing. The results follow the box: a search when a drag ends, or shortly after the last key.
  var KEY_STEP = 0.05; // one arrow key: 5 % of the photo
  var MIN_SIDE = 0.05; // the smallest box, as a share of the photo...
  var MIN_PX = 66; // ...and on screen: two 44 px corner handles and a middle left to drag
  var KEY_DELAY = 700; // ms after the last key before searching again
  var TAP_PX = 6; // a pointer that moved less than this tapped

  function whole() { return { x0: 0, y0: 0, x1: 1, y1: 1 }; }
  function clamp(value, low, high) { return Math.min(Math.max(value, low), high); }
  // One edge of the box as a share of the photo, written as the shop's language writes it ("25 %").
  function percent(value, messages) { return format(messages.percent || "{n}%", { n: Math.round(value * 100) }); }

  function CropBox(widget, crop) {
    this.widget = widget;
    this.crop = crop;
    this.stage = crop.querySelector("[data-vs-stage]");
    this.box = crop.querySelector("[data-vs-box]");
    this.hole = crop.querySelector("[data-vs-hole]");
    this.where = crop.querySelector("[data-vs-box-where]");
    // What a screen reader hears as the box moves (polite, live): one short line per change. The
    // box's description (where) is not live: it was, and with "Searching…" and the results' line
    // a key press made three announcements. A widget.html overridden before it: where is live.
    this.said = crop.querySelector("[data-vs-box-said]");
    this.wholeButton = crop.querySelector("[data-vs-whole]");
    this.fields = widget.form.querySelectorAll("[data-vs-box-field]");
    this.value = whole();
    this.drag = null;
    this.timer = null;
    this.bind();
  }

  CropBox.prototype.bind = function () {
    var self = this;
    this.stage.addEventListener("pointerdown", function (event) { self.down(event); });
    this.stage.addEventListener("pointermove", function (event) { self.move(event); });
    this.stage.addEventListener("pointerup", function (event) { self.up(event); });
    // The browser took the pointer (a finger scrolling the page): the box goes back, no search.
    this.stage.addEventListener("pointercancel", function (event) { self.up(event, true); });
    this.stage.addEventListener("dragstart", function (event) { event.preventDefault(); });
    this.box.addEventListener("keydown", function (event) { self.key(event); });
    // Smaller and Larger: the box sized round its middle, for a customer who cannot drag (a head
    // pointer, a shaking hand: WCAG 2.5.7); a tap beside it then brings it onto the product.
    this.crop.querySelectorAll("[data-vs-size]").forEach(function (button) {
      button.addEventListener("click", function () { self.resize(Number(button.getAttribute("data-vs-size"))); });
    });
    if (this.wholeButton) {
      this.wholeButton.addEventListener("click", function () {
        self.reset();
        self.box.focus();
        self.changed(0);
      });
    }
    // The handles' sizes depend on the photo's size on screen: redraw when it changes.
    this.widget.preview.addEventListener("load", function () { self.draw(); });
    window.addEventListener("resize", function () { self.draw(); });
  };

  CropBox.prototype.isWhole = function () {
    var v = this.value;
    return v.x0 <= 0 && v.y0 <= 0 && v.x1 >= 1 && v.y1 >= 1;
  };

  // The API's `box` parameter, or "" for the whole photo (no box sent).
  CropBox.prototype.param = function () {
    var v = this.value;
    if (this.isWhole()) { return ""; }
    return [v.x0, v.y0, v.x1, v.y1].map(function (n) { return String(Math.round(n * 10000) / 10000); }).join(",");
  };

  CropBox.prototype.reset = function (quiet) {
    this.value = whole();
    this.draw();
    this.settle("", quiet);
  };

  // The smallest side along x ("width") or y ("height"), as a share of the photo.
  CropBox.prototype.minSide = function (size) {
    return size > 0 ? Math.min(1, Math.max(MIN_SIDE, MIN_PX / size)) : MIN_SIDE;
  };

  CropBox.prototype.draw = function () {
    var v = this.value;
    var rect = this.stage.getBoundingClientRect();
    [this.box, this.hole].forEach(function (el) {
      el.style.left = v.x0 * 100 + "%";
      el.style.top = v.y0 * 100 + "%";
      el.style.width = (v.x1 - v.x0) * 100 + "%";
      el.style.height = (v.y1 - v.y0) * 100 + "%";
    });
    this.box.classList.toggle("vs-box-narrow", (v.x1 - v.x0) * rect.width < 140);
    this.box.classList.toggle("vs-box-short", (v.y1 - v.y0) * rect.height < 140);
    if (this.wholeButton) { this.wholeButton.disabled = this.isWhole(); }
  };

  // Once the box stops: describe where it is (screen readers), say so (``short``: only the edges
  // a key moved, "5% to 100% across"), and copy it into the form's number fields, which a plain
  // form post (no fetch) sends. ``quiet``: nothing said (a new photo: the status line speaks).
  CropBox.prototype.settle = function (short, quiet) {
    var v = this.value;
    var messages = this.widget.messages;
    var edges = { x0: percent(v.x0, messages), x1: percent(v.x1, messages), y0: percent(v.y0, messages), y1: percent(v.y1, messages) };
    var full = this.isWhole() ? messages.box_whole : format(messages.box_where, edges);
    this.where.textContent = full;
    if (this.said && !quiet) { this.said.textContent = short && !this.isWhole() && messages[short] ? format(messages[short], edges) : full; }
    var numbers = [v.x0, v.y0, v.x1, v.y1];
    this.fields.forEach(function (field, i) { field.value = String(Math.round(numbers[i] * 10000) / 10000); });
  };

  // Search again with the box, after `delay` ms; a newer change restarts the wait. Quietly: the
  // box's own line has said what changed.
  CropBox.prototype.changed = function (delay) {
    var widget = this.widget;
    clearTimeout(this.timer);
    this.timer = setTimeout(function () { widget.search(true); }, delay);
  };

  // Where a pointer is, as fractions of the photo (not clamped).
  CropBox.prototype.point = function (event) {
    var rect = this.stage.getBoundingClientRect();
    return { x: (event.clientX - rect.left) / rect.width, y: (event.clientY - rect.top) / rect.height, rect: rect };
  };

  // On a handle: resize by its sides; on the box: move it; on the photo beside it: draw a new one.
  CropBox.prototype.down = function (event) {
    if (event.pointerType === "mouse" && event.button !== 0) { return; }
    var handle = event.target.closest("[data-vs-handle]");
    var sides = handle ? handle.getAttribute("data-vs-handle") : "";
    var start = this.point(event);
    this.drag = {
      id: event.pointerId, start: start, from: Object.assign({}, this.value), moved: false,
      mode: handle ? "resize" : (this.box.contains(event.target) ? "move" : "draw"),
      n: sides.indexOf("n") >= 0, s: sides.indexOf("s") >= 0, e: sides.indexOf("e") >= 0, w: sides.indexOf("w") >= 0
    };
    clearTimeout(this.timer);
    this.stage.setPointerCapture(event.pointerId);
    this.box.focus({ preventScroll: true });
    event.preventDefault();
  };

  CropBox.prototype.move = function (event) {
    var drag = this.drag;
    if (!drag || drag.id !== event.pointerId) { return; }
    var p = this.point(event);
    var dx = p.x - drag.start.x, dy = p.y - drag.start.y;
    if (Math.abs(dx * p.rect.width) + Math.abs(dy * p.rect.height) >= TAP_PX) { drag.moved = true; }
    if (!drag.moved) { return; }
    var minX = this.minSide(p.rect.width), minY = this.minSide(p.rect.height);
    var f = drag.from, v = Object.assign({}, f);
    if (drag.mode === "move") {
      v.x0 = clamp(f.x0 + dx, 0, 1 - (f.x1 - f.x0)); v.x1 = v.x0 + (f.x1 - f.x0);
      v.y0 = clamp(f.y0 + dy, 0, 1 - (f.y1 - f.y0)); v.y1 = v.y0 + (f.y1 - f.y0);
    } else if (drag.mode === "resize") {
      if (drag.w) { v.x0 = clamp(f.x0 + dx, 0, f.x1 - minX); }
      if (drag.e) { v.x1 = clamp(f.x1 + dx, f.x0 + minX, 1); }
      if (drag.n) { v.y0 = clamp(f.y0 + dy, 0, f.y1 - minY); }
      if (drag.s) { v.y1 = clamp(f.y1 + dy, f.y0 + minY, 1); }
    } else {
      v = this.spanned(drag.start, p, minX, minY);
    }
    this.value = v;
    this.draw();
  };

  // A drawn box from the anchor `a` to the pointer `p`, at least the smallest size, in the photo.
  CropBox.prototype.spanned = function (a, p, minX, minY) {
    var ax = clamp(a.x, 0, 1), ay = clamp(a.y, 0, 1), px = clamp(p.x, 0, 1), py = clamp(p.y, 0, 1);
    var x0 = Math.min(ax, px), x1 = Math.max(ax, px), y0 = Math.min(ay, py), y1 = Math.max(ay, py);
    if (x1 - x0 < minX) { if (px < ax) { x0 = x1 - minX; } else { x1 = x0 + minX; } }
    if (y1 - y0 < minY) { if (py < ay) { y0 = y1 - minY; } else { y1 = y0 + minY; } }
    var sx = x0 < 0 ? -x0 : (x1 > 1 ? 1 - x1 : 0), sy = y0 < 0 ? -y0 : (y1 > 1 ? 1 - y1 : 0);
    return { x0: x0 + sx, x1: x1 + sx, y0: y0 + sy, y1: y1 + sy };
  };

  CropBox.prototype.up = function (event, cancelled) {
    var drag = this.drag;
    if (!drag || drag.id !== event.pointerId) { return; }
    this.drag = null;
    if (cancelled) {
      this.value = drag.from;
      this.draw();
      return;
    }
    if (!drag.moved && drag.mode === "draw") { this.centreAt(drag.start); } // a tap beside the box brings it there
    if (this.stage.hasPointerCapture(event.pointerId)) { this.stage.releasePointerCapture(event.pointerId); }
    var f = drag.from, v = this.value;
    if (f.x0 !== v.x0 || f.y0 !== v.y0 || f.x1 !== v.x1 || f.y1 !== v.y1) {
      this.settle();
      this.changed(0);
    }
  };

  CropBox.prototype.centreAt = function (p) {
    var v = this.value, w = v.x1 - v.x0, h = v.y1 - v.y0;
    var x0 = clamp(p.x - w / 2, 0, 1 - w), y0 = clamp(p.y - h / 2, 0, 1 - h);
    this.value = { x0: x0, y0: y0, x1: x0 + w, y1: y0 + h };
    this.draw();
  };

  var ARROWS = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };

  // Arrow keys move the box; with Shift they move its right or bottom side (resize); Enter
  // searches at once.
  CropBox.prototype.key = function (event) {
    if (event.key === "Enter") {
      event.preventDefault();
      this.changed(0);
      return;
    }
    var arrow = ARROWS[event.key];
    if (!arrow || event.altKey || event.ctrlKey || event.metaKey) { return; }
    event.preventDefault();
    var rect = this.stage.getBoundingClientRect();
    var v = event.shiftKey ? this.resized(arrow, rect) : this.moved(arrow);
    var f = this.value;
    if (v.x0 === f.x0 && v.y0 === f.y0 && v.x1 === f.x1 && v.y1 === f.y1) { return; }
    this.value = v;
    this.draw();
    this.settle(arrow[0] ? "box_across" : "box_down");
    this.changed(KEY_DELAY);
  };

  CropBox.prototype.moved = function (arrow) {
    var f = this.value, w = f.x1 - f.x0, h = f.y1 - f.y0;
    var x0 = clamp(f.x0 + arrow[0] * KEY_STEP, 0, 1 - w), y0 = clamp(f.y0 + arrow[1] * KEY_STEP, 0, 1 - h);
    return { x0: x0, y0: y0, x1: x0 + w, y1: y0 + h };
  };

  // Right and Down grow the box (past the photo's edge, it grows the other way), Left and Up shrink it.
  CropBox.prototype.resized = function (arrow, rect) {
    var v = Object.assign({}, this.value);
    var minX = this.minSide(rect.width), minY = this.minSide(rect.height);
    if (arrow[0]) {
      v.x1 = clamp(v.x1 + arrow[0] * KEY_STEP, v.x0 + minX, 1);
      if (arrow[0] > 0 && v.x1 - this.value.x1 < KEY_STEP / 2) { v.x0 = clamp(v.x0 - KEY_STEP, 0, v.x1 - minX); }
    } else {
      v.y1 = clamp(v.y1 + arrow[1] * KEY_STEP, v.y0 + minY, 1);
      if (arrow[1] > 0 && v.y1 - this.value.y1 < KEY_STEP / 2) { v.y0 = clamp(v.y0 - KEY_STEP, 0, v.y1 - minY); }
    }
    return v;
  };

  // Smaller (sign -1) or Larger (+1) by a key's step on every side, round the box's middle, kept
  // in the photo. Never disabled: a button that went disabled under the focus dropped it to the page.
  CropBox.prototype.scaled = function (sign, rect) {
    var f = this.value, step = 2 * KEY_STEP * sign;
    var w = clamp(f.x1 - f.x0 + step, this.minSide(rect.width), 1), h = clamp(f.y1 - f.y0 + step, this.minSide(rect.height), 1);
    var x0 = clamp((f.x0 + f.x1 - w) / 2, 0, 1 - w), y0 = clamp((f.y0 + f.y1 - h) / 2, 0, 1 - h);
    return { x0: x0, y0: y0, x1: x0 + w, y1: y0 + h };
  };

  CropBox.prototype.resize = function (sign) {
    var v = this.scaled(sign, this.stage.getBoundingClientRect()), f = this.value;
    var same = v.x0 === f.x0 && v.y0 === f.y0 && v.x1 === f.x1 && v.y1 === f.y1;
    this.value = v;
    this.draw();
    this.settle(); // where the box is now, said: the customer may not see it
    if (!same) { this.changed(KEY_DELAY); }
  };

  CropBox.prototype.show = function () {
    this.crop.hidden = false;
    this.reset(true);
  };

  // The longest side of the photo the widget sends: the box may pick a tenth of it and still
  // give the network (224 px) every pixel it uses.
  var MAX_SIDE = 2048;
  // A JPEG, PNG or WebP under this and under MAX_SIDE goes as it is: under the 1 MB that a proxy
  // in front of the shop refuses by default (nginx's client_max_body_size), with the form around it.
  var SMALL_BYTES = 900000;
  // A proxy refused the upload all the same (413 without the API's answer): sent again once, this small.
  var RETRY_SIDE = 1280;
  // On a slow connection (the browser's estimate: 2G or 3G, or the customer's data saver) the photo
  // goes at most this large, and as it is only under SLOW_BYTES: a 2048 px JPEG (500 to 800 KB) took
  // 16 s at 3G's 400 kbit/s up, a 1280 px one takes a third of that. A box over a fifth of the photo
  // still has the 224 px the server uses.
  var SLOW_SIDE = 1280;
  var SLOW_BYTES = 300000;

  function slowNetwork() {
    var connection = navigator.connection;
    return Boolean(connection && (connection.saveData || /2g|3g/.test(connection.effectiveType || "")));
  }

  // The photo drawn, as { source, width, height, close }: an <img> from a blob: URL (every browser
  // applies the EXIF rotation), else an ImageBitmap, which needs no URL: a Content-Security-Policy
  // whose img-src leaves out blob: refuses the first, not the second. null where neither can draw
  // it (HEIC in Chrome, a broken file).
  function decode(file) {
    return new Promise(function (resolve) {
      var url = URL.createObjectURL(file);
      var image = new Image();
      function bitmap() {
        if (!window.createImageBitmap) { resolve(null); return; }
        try {
          createImageBitmap(file, { imageOrientation: "from-image" }).then(function (drawn) {
            resolve({ source: drawn, width: drawn.width, height: drawn.height, close: function () { drawn.close(); } });
          }, function () { resolve(null); });
        } catch (error) { resolve(null); }
      }
      image.onload = function () {
        URL.revokeObjectURL(url);
        resolve({ source: image, width: image.naturalWidth, height: image.naturalHeight, close: function () {} });
      };
      image.onerror = function () { URL.revokeObjectURL(url); bitmap(); };
      image.src = url;
    });
  }

  // JPEG quality of a photo sent at its own size: its pixels as they were, to the eye and to the network.
  var QUALITY = 0.92;

  // Whether this browser turns a photo by its EXIF orientation when it draws it (CSS
  // image-orientation, from-image by default: Chrome 81, Firefox 77, Safari 13.1). One that does not
  // would send a phone's photo on its side once drawn; there a small photo goes as it is, and the
  // server turns it.
  function turnsByExif() {
    return Boolean(window.CSS && CSS.supports && CSS.supports("image-orientation", "from-image"));
  }

  function encode(canvas, quality) {
    return new Promise(function (resolve) { canvas.toBlob(resolve, "image/jpeg", quality); });
  }

  // The photo as it will be sent: a JPEG drawn from it, of at most MAX_SIDE px (alpha over white,
  // as the server does; the EXIF rotation applied), with ``side`` of at most that many px. Drawn
  // again even when it is small: the file as the phone saved it holds its EXIF (the GPS position,
  // the phone's model, the time), which a drawn copy does not. ``file`` itself where the browser
  // cannot draw it: a search is never refused for that.
  function shrink(file, side) {
    var slow = !side && slowNetwork();
    var most = side || (slow ? SLOW_SIDE : MAX_SIDE);
    var small = slow ? SLOW_BYTES : SMALL_BYTES;
    var plain = /^image\/(jpeg|png|webp)$/.test(file.type || "");
    if (!window.Promise || !window.URL || !URL.createObjectURL || !window.HTMLCanvasElement || !HTMLCanvasElement.prototype.toBlob) {
      return window.Promise ? Promise.resolve(file) : { then: function (next) { next(file); } };
    }
    return decode(file).then(function (drawn) {
      if (!drawn) { return file; } // the server says what is wrong with it
      var scale = Math.min(1, most / Math.max(drawn.width, drawn.height, 1));
      // Small enough to go as it was: it keeps its size and nearly all of its quality.
      var kept = !side && scale === 1 && plain && file.size <= small;
      if (kept && !turnsByExif()) { drawn.close(); return file; }
      var canvas = document.createElement("canvas");
      canvas.width = Math.max(1, Math.round(drawn.width * scale));
      canvas.height = Math.max(1, Math.round(drawn.height * scale));
      var context = canvas.getContext("2d");
      if (!context) { drawn.close(); return file; }
      context.fillStyle = "#fff";
      context.fillRect(0, 0, canvas.width, canvas.height);
      context.imageSmoothingQuality = "high";
      context.drawImage(drawn.source, 0, 0, canvas.width, canvas.height);
      drawn.close();
      return encode(canvas, kept ? QUALITY : side || slow ? 0.85 : 0.9).then(function (blob) {
        // A small photo saved at a higher quality than ours can come back larger: kept under the limit.
        return blob && kept && blob.size > small ? encode(canvas, 0.85) : blob;
      }).then(function (blob) {
        if (!blob) { return file; }
        return window.File ? new File([blob], "photo.jpg", { type: "image/jpeg" }) : blob;
      });
    }).then(null, function () {
      // Drawing failed (a canvas past the browser's limits, memory): the photo goes as it is, where
      // the widget stayed on "Searching…" and, since only a photo made small can be searched, never
      // searched again until the page was reloaded.
      return file;
    });
  }

  // The name the photo is sent under: "photo" and its kind. A phone names a photo by when it was
  // taken (IMG_20261205_134501.jpg), and the shop's error reports list the name; a photo that could
  // not be drawn again goes under this name too.
  var EXTENSIONS = { "image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp", "image/gif": ".gif", "image/heic": ".heic", "image/heif": ".heif" };
  function sentName(file) {
    var extension = EXTENSIONS[file.type] || (/\.[A-Za-z0-9]{1,5}$/.exec(file.name || "") || [".jpg"])[0].toLowerCase();
    return "photo" + extension;
  }

  function Widget(root) {
    this.root = root;
    this.mode = root.dataset.vsMode || "inline";
    // Compact mode: the dialog waits in a <template>, where its <form> stays its own even when the
    // button sits inside the shop's search <form>; made from script, a form inside a form works.
    var held = root.querySelector("template[data-vs-dialog-template]");
    if (held) { held.parentNode.replaceChild(document.importNode(held.content, true), held); }
    this.form = root.querySelector("form");
    if (!this.form) { throw new InsideForm(root); }
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
    this.searches = 0; // the latest search's number: an older answer is dropped
    this.picks = 0; // the latest photo chosen: an older one still shrinking is dropped
    this.shrinking = false;
    this.abort = null;
    this.waitUntil = 0; // a throttled search: nothing is sent before this time (ms)
    this.waitTimer = null;
    this.waitKind = ""; // "throttled" (429), "unavailable" or "busy" (503)
    this.waitAgain = false; // the search goes by itself when the wait is over
    var crop = root.querySelector("[data-vs-crop]");
    this.crop = crop && this.preview && crop.contains(this.preview) ? new CropBox(this, crop) : null;
    if (this.preview) {
      var self = this;
      // The browser cannot show the photo (HEIC in Chrome; a Content-Security-Policy whose img-src
      // leaves out blob:): no broken picture with a box on it; the whole photo is searched.
      this.preview.addEventListener("error", function () { self.unseen(); });
    }
    this.bind();
    this.bindDialog();
  }

  Widget.prototype.bind = function () {
    var self = this;
    this.root.querySelectorAll(".vs-js-only").forEach(function (el) { el.hidden = false; });
    // The box's number fields are for pages without the script; with it, the box is drawn.
    if (this.crop) { this.root.querySelectorAll("[data-vs-no-js]").forEach(function (el) { el.hidden = true; }); }
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
    // "Try again" after a search the network or the shop failed: the same photo and box, not chosen again.
    this.retry = this.root.querySelector("[data-vs-retry]");
    if (!this.retry) {
      this.retry = document.createElement("button");
      this.retry.type = "button";
      this.retry.className = "vs-button vs-retry";
      this.retry.setAttribute("data-vs-retry", "");
      this.retry.hidden = true;
      this.status.parentNode.insertBefore(this.retry, this.status.nextSibling);
    }
    this.retry.textContent = this.messages.retry;
    // How far a slow upload is (uploaded); under the status line, outside its live region.
    this.progress = this.root.querySelector("[data-vs-progress]");
    if (!this.progress) {
      this.progress = document.createElement("div");
      this.progress.className = "vs-progress";
      this.progress.setAttribute("data-vs-progress", "");
      this.progress.setAttribute("role", "progressbar");
      this.progress.setAttribute("aria-valuemin", "0");
      this.progress.setAttribute("aria-valuemax", "100");
      this.progress.setAttribute("aria-valuenow", "0");
      this.progress.setAttribute("aria-label", this.messages.uploading);
      this.progress.appendChild(document.createElement("span")).className = "vs-progress-bar";
      this.progress.hidden = true;
      this.status.parentNode.insertBefore(this.progress, this.status.nextSibling);
    }
    this.retry.addEventListener("click", function () { self.search(); });
    // A search that failed offline goes again by itself once the phone is back online.
    window.addEventListener("online", function () {
      if (self.offline && self.file && self.root.isConnected !== false) { self.search(); }
    });
    this.form.addEventListener("submit", function (event) {
      if (!self.apiUrl || !window.Promise || !window.FormData) { return; } // plain form post
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
    widgets = widgets.filter(function (widget) { return widget.root.isConnected !== false; }); // swapped out
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

  // ``retry``: the "Try again" button is shown under the line (a failure the network or the shop caused).
  // The line already saying it (the box moved, the same count of results): left alone, not said again.
  Widget.prototype.say = function (message, isError, retry) {
    if (this.retry) { this.retry.hidden = !retry; }
    if (!isError && this.status.textContent === message && !this.status.querySelector(".vs-error")) { return; }
    this.status.textContent = "";
    var span = document.createElement("span");
    if (isError) { span.className = "vs-error"; }
    span.textContent = message;
    this.status.appendChild(span);
  };

  // The customer's words for an API error: by its stable code, never the developer's detail; a
  // refused kind of file is named ("SVG files are not accepted here"), by the API's "format". A
  // damaged photo's detail is the customer's words (in the page's language: headers()), as the
  // no-JavaScript page shows them; "not an image we can read" sent them after another format.
  Widget.prototype.errorMessage = function (body, status) {
    var code = body && body.code;
    if (code === "invalid_image" && body.reason === "damaged" && body.detail) { return body.detail; }
    if (code === "unsupported_format") {
      if (body.format && this.messages.unsupported_format) { return format(this.messages.unsupported_format, { format: body.format }); }
      return body.detail || this.messages.failed;
    }
    if (code && this.messages[code]) { return this.messages[code]; }
    if (status === 429) { return this.messages.throttled || this.messages.failed; }
    // Refused by a proxy in front of the shop (the API's own 413s carry their code).
    if (status === 413) { return this.messages.upload_too_large || this.messages.failed; }
    return this.messages.failed;
  };

  // The API's codes for a photo it refuses as it is (not a moved box, not the network).
  var PHOTO_ERRORS = ["invalid_image", "unsupported_format", "blank_image", "too_many_pixels", "image_too_large", "file_too_large"];

  Widget.prototype.choose = function (file) {
    var self = this;
    if (!file) { return; }
    if (file.type && file.type.indexOf("image/") !== 0) {
      this.refuse(this.messages.invalid_image || "That file is not an image; choose a JPEG, PNG or WebP photo.");
      return;
    }
    // A phone's photo (3 to 20 MB, up to 200 megapixels) is made a 2048 px JPEG here first: a
    // fraction of the upload on a mobile network, and never refused for its size; the server
    // reduces every photo to 224 px anyway. One the browser cannot draw is sent as it is.
    // Only the last photo chosen is searched: a 12-megapixel photo takes longer to shrink than a
    // small one chosen after it, and came back over it (its preview and its results).
    var pick = ++this.picks;
    this.shrinking = true;
    this.say(this.messages.searching);
    shrink(file).then(function (sent) {
      if (pick !== self.picks) { return; }
      self.shrinking = false;
      self.chosen(sent);
    });
  };

  // A new file refused here, before it is sent (not an image, a HEIC the shop cannot read, too
  // large). The last photo's cards stayed under the refusal and read as this file's results (a
  // PDF "found" milk at 50% match), and its preview and box still searched it. They go, as for a
  // photo the shop refuses; a search or a shrinking photo still under way is dropped with them.
  Widget.prototype.refuse = function (message) {
    this.picks++;
    this.searches++;
    this.shrinking = false;
    if (this.abort) { this.abort.abort(); this.abort = null; }
    if (this.crop) { clearTimeout(this.crop.timer); }
    this.emptyResults();
    this.results.setAttribute("aria-busy", "false");
    this.root.classList.remove("vs-busy");
    this.uploaded(null);
    this.unseen();
    this.file = null;
    this.offline = false;
    this.say(message, true);
  };

  // A HEIC photo (an iPhone's) by its type or name.
  function isHeic(file) {
    return /^image\/hei[cf]/i.test(file.type || "") || /\.hei[cf]$/i.test(file.name || "");
  }

  Widget.prototype.chosen = function (sent) {
    // A HEIC photo the browser could not make a JPEG of (Chrome, Firefox), for a shop that cannot
    // decode HEIC (no pillow-heif): said at once, where it took the whole upload (a minute on 3G)
    // to hear it. An overridden widget.html without data-accepts-heic sends it as before.
    if (isHeic(sent) && this.form.getAttribute("data-accepts-heic") === "0") {
      this.refuse(format(this.messages.unsupported_format, { format: "HEIC" }));
      return;
    }
    if (this.maxBytes && sent.size > this.maxBytes) {
      this.refuse(this.messages.file_too_large || "That photo is larger than " + this.form.dataset.maxMb + " MB; choose a smaller one.");
      return;
    }
    this.file = sent;
    this.resent = false; // a new photo may go again once, smaller, if a proxy refuses it
    this.revealing = true; // this photo's first answer is brought into view (not the box's later ones)
    if (this.preview && window.URL && URL.createObjectURL) {
      if (this.preview.dataset.url) { URL.revokeObjectURL(this.preview.dataset.url); }
      this.preview.dataset.url = URL.createObjectURL(sent);
      this.preview.src = this.preview.dataset.url;
      this.preview.hidden = false;
      if (this.crop) { this.crop.show(); } // a new photo: the whole of it again
    }
    this.search();
  };

  Widget.prototype.unseen = function () {
    if (!this.preview.dataset.url) { return; }
    this.preview.hidden = true;
    if (this.crop) {
      // The keyboard was on the box (or "Whole photo"), hidden now: it would fall to the page's
      // <body>. It goes to "Choose a photo", what the error asks for next.
      var focused = this.crop.crop.contains(document.activeElement);
      this.crop.crop.hidden = true;
      if (focused) { this.inputs[this.inputs.length - 1].focus(); }
      this.crop.value = whole();
      this.crop.settle("", true);
    }
  };

  Widget.prototype.formData = function () {
    var data = new FormData();
    this.form.querySelectorAll('input[type="hidden"]').forEach(function (input) {
      // The CSRF token goes in the header (csrfToken), never the body, where Django would read it first.
      if (!input.hasAttribute("data-vs-page-only") && input.name !== "csrfmiddlewaretoken") { data.append(input.name, input.value); }
    });
    data.append("image", this.file, sentName(this.file));
    var box = this.crop ? this.crop.param() : "";
    if (box) { data.append("box", box); }
    return data;
  };

  // The CSRF token to send: the cookie's, read now, else the one the page was rendered with. The
  // page's goes stale when the customer signs in (in another tab: Django rotates the token) or when
  // the widget came from a cached fragment, and a signed-in customer's searches were refused (403)
  // until the page was reloaded. data-csrf-cookie is CSRF_COOKIE_NAME, empty where the script
  // cannot read it (CSRF_COOKIE_HTTPONLY, CSRF_USE_SESSIONS); an overridden template without it: Django's default.
  Widget.prototype.csrfToken = function () {
    var input = this.form.querySelector('input[name="csrfmiddlewaretoken"]');
    return cookieToken(this.form) || (input ? input.value : "");
  };

  // The token in the cookie that holder's data-csrf-cookie names (Django's default where it has none).
  function cookieToken(holder) {
    var name = holder.hasAttribute("data-csrf-cookie") ? holder.getAttribute("data-csrf-cookie") : "csrftoken";
    var cookies = name ? document.cookie.split(";") : [];
    for (var i = 0; i < cookies.length; i++) {
      var pair = cookies[i].replace(/^\s+/, "");
      if (pair.indexOf(name + "=") === 0) { return decodeURIComponent(pair.slice(name.length + 1)); }
    }
    return "";
  }

  // A form inside [data-vs-fresh-csrf] (Oscar's basket buttons on the look-alike cards) sends the
  // visitor's current token: in a {% cache %} fragment the rendered one is the first visitor's, and
  // the shop answered every later visitor's "Add to basket" with 403.
  document.addEventListener("submit", function (event) {
    var holder = event.target.closest ? event.target.closest("[data-vs-fresh-csrf]") : null;
    var input = holder ? event.target.querySelector('input[name="csrfmiddlewaretoken"]') : null;
    var token = input ? cookieToken(holder) : "";
    if (token) { input.value = token; }
  }, true);

  // The page's language (data-vs-language): the results' names and links are in it. The root's
  // lang is the widget's words' (English on a Spanish page, where the package has no Spanish); an
  // overridden widget.html without data-vs-language has the page's there.
  Widget.prototype.pageLanguage = function () {
    return this.root.getAttribute("data-vs-language") || this.root.getAttribute("lang") || "";
  };

  // The API asked in the page's language, where it is mounted outside i18n_patterns (Django's
  // LocaleMiddleware then reads Accept-Language; a browser sends its own).
  Widget.prototype.headers = function (token) {
    var headers = { "Accept": "application/json" };
    var language = this.pageLanguage();
    if (language) { headers["Accept-Language"] = language; }
    if (token) { headers["X-CSRFToken"] = token; }
    return headers;
  };

  // A search on a slow connection says it is still going after SLOW_MS; one the shop never answers
  // (a hung server, a connection dead without an error) ends after WAIT_MS plus the upload's time
  // at SLOW_RATE bytes a second, with "Try again", not "Searching…" for ever.
  var SLOW_MS = 8000;
  var WAIT_MS = 45000;
  var SLOW_RATE = 25000;

  // An upload still going after this long (a photo on 3G: 1 MB takes 20 s at 400 kbit/s) shows how
  // far it is; a quicker one shows nothing, not a bar that flashes.
  var PROGRESS_MS = 1000;

  // The photo posted with XMLHttpRequest: fetch says nothing of an upload's progress, and on a
  // slow connection "Searching…" stood still for the whole upload. It answers as fetch does (a
  // promise of { ok, status, headers.get, json }) and fails as fetch does (a rejection: the
  // network failed, or ``options.signal`` aborted it); ``progress(loaded, total)`` as it goes.
  function post(url, options, progress) {
    return new Promise(function (resolve, reject) {
      var xhr = new XMLHttpRequest();
      xhr.open("POST", url);
      Object.keys(options.headers || {}).forEach(function (name) { xhr.setRequestHeader(name, options.headers[name]); });
      // Only to the page's own origin: an upload listener makes a cross-origin request "non-simple",
      // and the browser would first send a preflight the shop's API (CORS) may not answer.
      if (xhr.upload && progress && sameOrigin(url)) {
        xhr.upload.onprogress = function (event) { if (event.lengthComputable) { progress(event.loaded, event.total); } };
        xhr.upload.onload = function () { progress(1, 1); };
      }
      xhr.onload = function () {
        resolve({
          ok: xhr.status >= 200 && xhr.status < 300,
          status: xhr.status,
          headers: { get: function (name) { return xhr.getResponseHeader(name); } },
          json: function () { return new Promise(function (done) { done(JSON.parse(xhr.responseText)); }); }
        });
      };
      xhr.onerror = xhr.onabort = xhr.ontimeout = function () { reject(new TypeError("The search did not complete.")); };
      if (options.signal) {
        if (options.signal.aborted) { reject(new TypeError("Aborted.")); return; }
        options.signal.addEventListener("abort", function () { xhr.abort(); });
      }
      xhr.send(options.body);
    });
  }

  function sameOrigin(url) {
    try { return new URL(url, window.location.href).origin === window.location.origin; } catch (error) { return false; }
  }

  function retryable(message) {
    var error = new Error(message);
    error.retry = true;
    return error;
  }

  // ``quiet``: a search the box started. Its "Searching…" is not said (the results dim while it
  // runs), nor its outcome when the status line already says it: the box's line spoke.
  // ``automatic``: the widget's own try once a 503's wait is over (it does not go by itself again).
  Widget.prototype.search = function (quiet, automatic) {
    var self = this;
    if (this.shrinking) { return; } // a photo just chosen: it searches once it is made small
    if (!this.file) {
      this.say(this.messages.required, true);
      this.inputs[this.inputs.length - 1].focus();
      return;
    }
    if (this.waitUntil > Date.now()) {
      // Sent now it would only be refused again, and count against the customer once more.
      if (this.revealing) { this.emptyResults(); } // a new photo: the last one's cards are not its
      if (quiet === true) {
        // The box moved: the results follow it when the wait is over. The line, which has said
        // the wait, is left alone: written again it was read out whole at every move of the box.
        this.waitAgain = true;
        if (this.status.querySelector(".vs-error")) { return; }
      }
      this.say(this.waitWords(), true, true);
      return;
    }
    var token = this.csrfToken();
    // A new search (the box moved again) replaces the one still running: only the latest answers.
    var number = ++this.searches;
    if (this.abort) { this.abort.abort(); }
    this.abort = window.AbortController ? new AbortController() : null;
    function latest() { return number === self.searches; }
    this.offline = false;
    if (quiet !== true || this.status.querySelector(".vs-error")) { this.say(this.messages.searching); }
    this.results.setAttribute("aria-busy", "true");
    this.root.classList.add("vs-busy");
    var controller = this.abort, timedOut = false;
    var slow = window.setTimeout(function () { if (latest()) { self.say(self.messages.slow); } }, SLOW_MS);
    var limit = window.setTimeout(function () {
      timedOut = true;
      if (controller) { controller.abort(); }
    }, WAIT_MS + 1000 * (this.file.size || 0) / SLOW_RATE);
    var started = Date.now();
    post(this.apiUrl, {
      body: this.formData(),
      headers: this.headers(token),
      signal: this.abort ? this.abort.signal : undefined
    }, function (loaded, total) {
      if (latest()) { self.uploaded(loaded >= total || Date.now() - started < PROGRESS_MS ? null : loaded / total); }
    }).catch(function () {
      if (!timedOut && navigator.onLine === false) {
        var offline = retryable(self.messages.offline);
        offline.offline = true;
        throw offline;
      }
      throw retryable(timedOut ? self.messages.timeout : self.messages.network);
    }).then(function (response) {
      if (response.status === 413 && !self.resent) {
        // A proxy's body limit under the app's (nginx: 1 MB by default): the photo goes again, smaller.
        self.resent = true;
        return shrink(self.file, RETRY_SIDE).then(function (smaller) {
          if (latest()) { self.file = smaller; self.search(); }
          return { again: true };
        });
      }
      return response.json().catch(function () {
        // A refusal without the API's JSON (a proxy's page) is said by its status; an answer whose
        // body was cut off (the connection dropped, the time ran out) is not "nothing found".
        if (response.ok) { throw retryable(timedOut ? self.messages.timeout : self.messages.network); }
        return {};
      }).then(function (body) {
        if (!response.ok) {
          var failure = new Error(self.errorMessage(body, response.status));
          failure.photo = PHOTO_ERRORS.indexOf(body && body.code) !== -1;
          failure.retry = response.status >= 500 || response.status === 429;
          // Throttled (429), or the shop's search down for a while (503: the model loading, the
          // database restarting, the index rebuilt): its Retry-After says when trying helps.
          failure.wait = response.status === 429 || response.status === 503 ? retryAfter(response.headers.get("Retry-After")) : 0;
          failure.unavailable = response.status === 503;
          // A burst of searches (MAX_CONCURRENT_SEARCHES): the same wait, in its own words.
          failure.busy = failure.unavailable && Boolean(body) && body.code === "busy";
          throw failure;
        }
        return body;
      });
    }).then(function (body) {
      if (body.again) { return; }
      if (latest()) { self.render(body.results || [], body.confident !== false); }
    }).catch(function (error) {
      if (!latest()) { return; }
      // A new photo that failed (blank, unreadable, refused): the last photo's cards would read as
      // its results under the error. A moved box that failed keeps them: they are this photo's.
      if (self.revealing) { self.emptyResults(); }
      if (error.photo) {
        // The photo itself was refused: its preview and box (with "drag the box") would offer a
        // crop that is refused again. Gone, and searching again asks for another photo.
        self.unseen();
        self.file = null;
      }
      self.offline = Boolean(error.offline);
      if (error.wait) {
        // The shop's search down for a while: the same photo goes again by itself once, when the
        // wait is over. The customer chose it to search it, and came back to a line that said
        // "try again" (a press at once got 503 again). Once only: each try sends the photo again,
        // on a phone's data, to a shop that may stay down; then "Try again" is theirs to press.
        self.wait(error.wait, error.busy ? "busy" : error.unavailable ? "unavailable" : "throttled", error.unavailable && !automatic);
        error.message = self.waitWords();
      }
      self.say(error.message || self.messages.failed, true, Boolean(error.retry && self.file));
    }).then(function () {
      window.clearTimeout(slow);
      window.clearTimeout(limit);
      if (!latest()) { return; }
      self.uploaded(null);
      self.results.setAttribute("aria-busy", "false");
      self.root.classList.remove("vs-busy");
      self.reveal();
    });
  };

  // How far the photo's upload is: a bar under the status line (``share`` 0 to 1), hidden for
  // null. Not live: a screen reader hears "Searching…" once and the result, not every percent;
  // the bar's value (aria-valuenow) is there to be read when the customer looks for it.
  Widget.prototype.uploaded = function (share) {
    var bar = this.progress;
    if (!bar) { return; }
    if (share === null) { bar.hidden = true; return; }
    var percent = Math.min(99, Math.floor(share * 100));
    if (bar.hidden && this.revealing) {
      // A new photo's upload: on a phone the photo fills the screen, and the line and the bar
      // under it were below it, unseen, for the whole upload.
      bar.hidden = false;
      this.bringUp();
    }
    bar.hidden = false;
    if (bar.getAttribute("aria-valuenow") !== String(percent)) {
      bar.setAttribute("aria-valuenow", String(percent));
      bar.firstChild.style.width = percent + "%";
    }
  };

  // Seconds to wait from a 429's Retry-After (DRF sends whole seconds; HTTP also allows a date),
  // 0 when it says nothing usable.
  function retryAfter(value) {
    if (!value) { return 0; }
    var seconds = /^\s*\d+\s*$/.test(value) ? parseInt(value, 10) : (Date.parse(value) - Date.now()) / 1000;
    return seconds > 0 ? Math.ceil(seconds) : 0;
  }

  // "in 37 seconds", "in 2 minutes", in the language of the sentence it sits in (the widget's words',
  // its root's lang) with its plural forms (the browser's Intl), or "" where the browser cannot say it.
  function inTime(seconds, language) {
    if (!window.Intl || !Intl.RelativeTimeFormat) { return ""; }
    try {
      var when = new Intl.RelativeTimeFormat(language || undefined, { numeric: "always" });
      if (seconds <= 90) { return when.format(seconds, "second"); }
      if (seconds <= 90 * 60) { return when.format(Math.ceil(seconds / 60), "minute"); }
      return when.format(Math.ceil(seconds / 3600), "hour");
    } catch (error) { return ""; }
  }

  // The line with the time still to wait (throttled, or unavailable: saying whether the search
  // goes again by itself); without Intl, the words without a time.
  Widget.prototype.waitWords = function () {
    var left = Math.max(1, Math.ceil((this.waitUntil - Date.now()) / 1000));
    var when = inTime(left, this.root.getAttribute("lang"));
    var passing = this.waitKind === "unavailable" || this.waitKind === "busy";
    var kind = passing ? this.waitKind + (this.waitAgain ? "_again" : "_wait") : "throttled_wait";
    if (when && this.messages[kind]) { return format(this.messages[kind], { when: when }); }
    return this.messages[this.waitKind || "throttled"] || this.messages.failed;
  };

  // A search refused for coming too often (429) or while the shop's search is down (503), with
  // the time to wait: "Try again" stays, greyed and aria-disabled (still focusable: a press says
  // the time left) until then, and nothing is sent before; it went at once and was refused again
  // (a 429 counting against the customer once more). ``kind``: "throttled", "unavailable" or "busy";
  // ``again``: the search goes by itself when the wait is over.
  Widget.prototype.wait = function (seconds, kind, again) {
    var self = this, retry = this.retry;
    this.waitUntil = Date.now() + seconds * 1000;
    this.waitKind = kind || "throttled";
    this.waitAgain = Boolean(again);
    retry.setAttribute("aria-disabled", "true");
    window.clearTimeout(this.waitTimer);
    this.waitTimer = window.setTimeout(function () {
      var again = self.waitAgain;
      self.waitAgain = false;
      retry.removeAttribute("aria-disabled");
      if (again && self.file && self.root.isConnected !== false) { self.search(false, true); }
    }, seconds * 1000);
  };

  // On a phone the customer's photo and its box fill the screen, and the answer to a new photo came
  // below it, unseen. The status line (results or error) is brought up, with the first results under
  // it; a box moved afterwards searches again without moving the page under the finger.
  Widget.prototype.reveal = function () {
    if (!this.revealing) { return; }
    this.revealing = false;
    this.bringUp();
  };

  // The status line (and what is under it) brought into view, unless it is seen already.
  Widget.prototype.bringUp = function () {
    var line = this.status.getBoundingClientRect();
    var view = this.dialog && this.dialog.open ? this.dialog.getBoundingClientRect() : { bottom: window.innerHeight || document.documentElement.clientHeight };
    if (line.bottom <= view.bottom - 48 || !this.status.scrollIntoView) { return; } // seen, with a card's top below it
    var still = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    this.status.scrollIntoView({ block: "start", behavior: still ? "auto" : "smooth" });
  };

  // The results are a "Search results" landmark while they hold cards, and none while empty: a
  // screen reader lists landmarks, and an empty one before any search was a stop with nothing in it.
  Widget.prototype.landmark = function (on) {
    var label = this.results.getAttribute("data-vs-label");
    if (on && label) {
      this.results.setAttribute("role", "region");
      this.results.setAttribute("aria-label", label);
    } else if (label) { // an overridden template without data-vs-label keeps its own
      this.results.removeAttribute("role");
      this.results.removeAttribute("aria-label");
    }
  };

  // One status line says what the results are; the list below holds only the cards.
  Widget.prototype.emptyResults = function () {
    this.results.textContent = "";
    this.landmark(false);
  };

  Widget.prototype.render = function (results, confident) {
    this.emptyResults();
    if (!results.length) {
      this.say(this.messages.none);
      return;
    }
    var list = document.createElement("ol");
    list.className = "vs-grid" + (confident ? "" : " vs-unsure");
    list.setAttribute("data-vs-list", "");
    // The shop's names and prices: in the page's language, as the server's list says it.
    var language = this.pageLanguage();
    if (language) { list.setAttribute("lang", language); }
    var self = this;
    results.forEach(function (result) {
      list.appendChild(fillCard(self.template.content.firstElementChild.cloneNode(true), result, self.messages));
    });
    this.results.appendChild(list);
    this.landmark(true);
    if (confident) {
      var count = results.length;
      // One line per count from the server (plural forms differ between languages); else English.
      this.say(this.messages.results[count] || format(count === 1 ? this.messages.result : this.messages.results_other, { count: count }));
    } else {
      this.say(this.messages.unsure);
    }
  };

  // An inline widget written inside another <form>: HTML dropped the widget's own form, so its
  // fields would go with the outer form (the CSRF token in a GET search's address, say).
  function InsideForm(root) {
    this.message = "Visual search: the widget #" + root.id + " is inside another <form>, and HTML drops " +
      "a <form> written inside a form, so the widget has none. Move {% visual_search_widget %} out of " +
      "that form, or use mode=\"compact\" (a camera button), which works inside one.";
  }

  function init() {
    document.querySelectorAll("[data-vs-widget]").forEach(function (root) {
      if (root.vsWidget !== undefined) { return; }
      if (typeof window.HTMLDialogElement !== "function" && root.querySelector("template[data-vs-dialog-template]")) {
        root.vsWidget = null; // no <dialog> (Safari before 15.4): the camera button stays a link to the search page
        return;
      }
      try {
        root.vsWidget = new Widget(root);
        widgets.push(root.vsWidget);
      } catch (error) {
        root.vsWidget = null; // tried once; the page's other widgets still start
        if (!(error instanceof InsideForm)) { window.setTimeout(function () { throw error; }); return; }
        // Customers get no widget that cannot work, and the outer form none of its fields.
        root.querySelectorAll("input, button, select, textarea").forEach(function (el) { el.disabled = true; });
        root.hidden = true;
        if (window.console) { console.error(error.message); }
      }
    });
  }

  window.visualSearchWidget = { init: init };
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
  // Widgets put in the page later (htmx, Turbo, Unpoly, a script's innerHTML), whose own <script>
  // tag did not run again, start by themselves.
  function holdsWidget(node) {
    return node.nodeType === 1 && (node.hasAttribute("data-vs-widget") || node.querySelector("[data-vs-widget]") !== null);
  }
  if (window.MutationObserver) {
    new MutationObserver(function (records) {
      for (var i = 0; i < records.length; i++) {
        if (Array.prototype.some.call(records[i].addedNodes, holdsWidget)) { init(); return; }
      }
    }).observe(document.documentElement, { childList: true, subtree: true });
  }
})();

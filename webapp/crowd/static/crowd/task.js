/* 2AFC judging page: preloads, 1:1 device-pixel display, keyboard/touch, a localStorage retry queue. */
(function () {
  "use strict";
  var app = document.getElementById("app");
  var token = app.dataset.token;
  var QKEY = "afc-queue:" + token;
  var st = null, items = [], idx = 0, shownAt = 0, busy = true, backoff = 500, flushing = false;
  var withdrawing = false, hiddenForConfirm = [];
  var cache = {};
  var $ = function (id) { return document.getElementById(id); };

  function uuid4() {
    if (window.crypto && crypto.randomUUID) { return crypto.randomUUID(); }
    var b = new Uint8Array(16); crypto.getRandomValues(b);
    b[6] = (b[6] & 15) | 64; b[8] = (b[8] & 63) | 128;
    var h = Array.prototype.map.call(b, function (x) { return (x + 256).toString(16).slice(1); }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }
  function loadQueue() { try { return JSON.parse(localStorage.getItem(QKEY) || "[]"); } catch (e) { return []; } }
  function saveQueue(q) { try { localStorage.setItem(QKEY, JSON.stringify(q)); } catch (e) { /* private mode */ } }
  var queue = loadQueue();
  // positions the server acknowledged: the state embedded in the page may predate an ack that arrived while
  // the page reloaded (after the answer had left the queue)
  var AKEY = "afc-acked:" + token;
  function loadAcked() { try { return JSON.parse(localStorage.getItem(AKEY) || "{}"); } catch (e) { return {}; } }
  function remember(j) {
    var a = loadAcked(); a[j.position] = j.choice;
    try { localStorage.setItem(AKEY, JSON.stringify(a)); } catch (e) { /* private mode */ }
  }

  function post(url, body) {
    return fetch(url, { method: "POST", credentials: "same-origin", body: JSON.stringify(body || {}),
      headers: { "Content-Type": "application/json", "X-Assignment-Token": token } });
  }

  function flush() {
    if (withdrawing || flushing || !queue.length) { return Promise.resolve(); }
    flushing = true;
    var j = queue[0];
    return post(app.dataset.judge, j).then(function (r) {
      flushing = false;
      if (r.status === 200 || r.status === 201 || r.status === 400 || r.status === 409) {
        if (r.status < 300) { remember(j); }
        queue.shift(); saveQueue(queue); backoff = 500;
        $("status").textContent = r.status >= 400 ? "One answer was rejected by the server (" + r.status + ")." : "";
        return flush();
      }
      if (r.status === 403 || r.status === 404) {
        $("status").textContent = "This assignment is no longer open."; queue = []; saveQueue(queue); return;
      }
      throw new Error("HTTP " + r.status);
    }).catch(function () {
      flushing = false;
      $("status").textContent = "Connection problem: your answers are kept and will be re-sent.";
      setTimeout(flush, backoff); backoff = Math.min(backoff * 2, 30000);
    });
  }

  function preload(i) {
    if (i >= items.length || cache[i]) { return cache[i]; }
    var it = items[i];
    var urls = [it.left, it.right]; if (it.ref) { urls.push(it.ref); }
    cache[i] = Promise.all(urls.map(function (u) {
      return new Promise(function (ok, fail) {
        var im = new Image(); im.onload = function () { ok(im); }; im.onerror = fail; im.src = u;
      });
    }));
    return cache[i];
  }

  function place(el, im) {
    var dpr = window.devicePixelRatio || 1;
    el.src = im.src;
    el.style.width = (im.naturalWidth / dpr) + "px";
    el.style.height = (im.naturalHeight / dpr) + "px";
  }

  function checkSize(imgs) {
    var dpr = window.devicePixelRatio || 1;
    var w = (imgs[0].naturalWidth + imgs[1].naturalWidth) / dpr + 80;
    var h = (imgs[0].naturalHeight + (imgs[2] ? imgs[2].naturalHeight : 0)) / dpr + 120;
    $("size-warning").hidden = window.innerWidth >= w && window.innerHeight >= h;
  }

  function nextIndex(from) {
    var i = from;
    while (i < items.length && items[i].answered) { i++; }
    return i;
  }

  function show(i) {
    idx = nextIndex(i);
    $("bar").style.width = (100 * idx / items.length) + "%";
    if (idx >= items.length) { return finish(); }
    busy = true;
    var it = items[idx];
    $("phase").textContent = it.practice ? "Practice:" : "";
    preload(idx).then(function (imgs) {
      place($("left").querySelector("img"), imgs[0]);
      place($("right").querySelector("img"), imgs[1]);
      if (imgs[2]) { place($("ref"), imgs[2]); }
      checkSize(imgs);
      $("feedback").textContent = "";
      shownAt = performance.now(); busy = false;
      $("trial").dataset.position = it.position; $("trial").dataset.ready = "1";
      preload(idx + 1);
    }).catch(function () {
      $("status").textContent = "Could not load images; retrying…";
      delete cache[idx]; setTimeout(function () { show(idx); }, 2000);
    });
  }

  function answer(side) {
    if (busy || idx >= items.length) { return; }
    busy = true; $("trial").dataset.ready = "0";
    var it = items[idx];
    var j = { uuid: uuid4(), position: it.position, choice: side,
      response_ms: Math.max(0, Math.round(performance.now() - shownAt)), client_time: new Date().toISOString() };
    it.answered = side;
    queue.push(j); saveQueue(queue); flush();
    if (it.practice && it.correct) {
      $("feedback").textContent = side === it.correct ? "Correct!" : "Not quite: the other image was the right answer.";
      setTimeout(function () { show(idx + 1); }, 900);
    } else {
      show(idx + 1);
    }
  }

  function finish() {
    $("trial").hidden = true; $("finishing").hidden = false;
    var tryComplete = function () {
      if (withdrawing) { return; }
      if (queue.length) { flush(); setTimeout(tryComplete, 500); return; }
      post(app.dataset.complete).then(function (r) { return r.json().then(function (d) { return [r, d]; }); })
        .then(function (rd) {
          if (rd[0].ok) { window.location.href = rd[1].done_url; return; }
          $("finish-status").textContent = rd[1].error || "Could not finish yet; retrying…";
          if (rd[0].status === 409) { return start(); }
          setTimeout(tryComplete, 2000);
        }).catch(function () { setTimeout(tryComplete, 2000); });
    };
    tryComplete();
  }

  document.addEventListener("keydown", function (e) {
    if ($("trial").hidden) { return; }
    if (e.key === "ArrowLeft") { e.preventDefault(); answer("left"); }
    if (e.key === "ArrowRight") { e.preventDefault(); answer("right"); }
  });
  ["left", "right"].forEach(function (side) {
    $(side).addEventListener("click", function (e) { e.preventDefault(); answer(side); });
  });
  window.addEventListener("online", flush);

  function start() {
    // the page carries the state it was rendered with; the state URL gives it afresh
    var embedded = $("state");
    var got = embedded ? Promise.resolve(JSON.parse(embedded.textContent))
      : fetch(app.dataset.state, { credentials: "same-origin" }).then(function (r) { return r.json(); });
    if (embedded) { embedded.remove(); }
    return got
      .then(function (data) {
        st = data; items = data.items;
        var pending = loadAcked();
        queue.forEach(function (j) { pending[j.position] = j.choice; });
        items.forEach(function (it) { if (!it.answered && pending[it.position]) { it.answered = pending[it.position]; } });
        flush();
        var resumed = items.some(function (it) { return it.answered; });
        $("finishing").hidden = true;
        if (resumed) { $("instructions").hidden = true; $("trial").hidden = false; show(0); return; }
        $("begin").disabled = false; $("begin").textContent = "Start";
        preload(0);
      });
  }

  // Withdrawal: a confirm step in the page, then one POST that erases everything stored of the participant
  // in this study; the answers still queued here are dropped, not sent.
  var SECTIONS = ["instructions", "trial", "finishing"];
  $("withdraw").addEventListener("click", function () {
    hiddenForConfirm = SECTIONS.filter(function (id) { return !$(id).hidden; });
    SECTIONS.forEach(function (id) { $(id).hidden = true; });
    $("withdraw").hidden = true; $("withdraw-confirm").hidden = false; $("withdraw-no").focus();
  });
  $("withdraw-no").addEventListener("click", function () {
    $("withdraw-confirm").hidden = true; $("withdraw").hidden = false;
    hiddenForConfirm.forEach(function (id) { $(id).hidden = false; });
    shownAt = performance.now();  // the time spent on the question is not a response time
  });
  $("withdraw-yes").addEventListener("click", function () {
    withdrawing = true;
    $("withdraw-yes").disabled = true; $("withdraw-no").disabled = true;
    $("withdraw-status").textContent = "Withdrawing…";
    var send = function () {
      if (flushing) { setTimeout(send, 100); return; }  // an answer in flight lands first, then is erased too
      post(app.dataset.withdraw, { confirm: true })
        .then(function (r) { return r.json().then(function (d) { return [r, d]; }); })
        .then(function (rd) {
          if (rd[0].ok || rd[0].status === 404) {  // 404: gone already (an earlier try whose answer was lost)
            try { localStorage.removeItem(QKEY); localStorage.removeItem(AKEY); } catch (e) { /* private mode */ }
          }
          if (rd[0].ok) { window.location.href = rd[1].page; return; }
          if (rd[0].status === 404) {
            $("withdraw-status").textContent = "You have withdrawn: nothing of your participation is stored.";
            return;
          }
          throw new Error(rd[1].error || ("HTTP " + rd[0].status));
        }).catch(function (e) {
          withdrawing = false;
          $("withdraw-status").textContent = "Could not withdraw (" + e.message + "). Please try again.";
          $("withdraw-yes").disabled = false; $("withdraw-no").disabled = false;
        });
    };
    send();
  });

  $("begin").addEventListener("click", function () {
    $("instructions").hidden = true; $("trial").hidden = false; show(0);
  });
  post(app.dataset.device, { viewport: [window.innerWidth, window.innerHeight], dpr: window.devicePixelRatio || 1,
    screen: [screen.width, screen.height] }).catch(function () {});
  start().catch(function () { $("begin").textContent = "Could not load the study; please reload."; });
})();

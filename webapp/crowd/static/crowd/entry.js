/* Consent page of a study with viewing conditions: when the form is sent, what the browser measures goes with
   it (field "viewing"); the server decides from it whether this device may take part (webapp/crowd/viewing.py). */
(function () {
  "use strict";
  var form = document.getElementById("consent-form");
  var field = document.getElementById("viewing-facts");
  if (!form || !field) { return; }
  form.addEventListener("submit", function () {
    var ua = navigator.userAgent || "";
    var uad = navigator.userAgentData;
    // iPadOS presents itself as a Mac: a "Macintosh" with a touch screen is a tablet
    var mobile = !!(uad && uad.mobile) || (/Macintosh/.test(ua) && navigator.maxTouchPoints > 1);
    field.value = JSON.stringify({
      viewport: [window.innerWidth, window.innerHeight],
      dpr: window.devicePixelRatio || 1,
      screen: [screen.width, screen.height],
      mobile: mobile,
      fullscreen: !!(document.fullscreenEnabled || document.webkitFullscreenEnabled)
    });
  });
})();

/* perfmodel's addition to asv's page (loaded first, before asv's scripts).

   asv's page reads its results (info.json, index.json, graphs/) with XMLHttpRequest. A page opened
   from a file (file://) may not do that in Chromium and Firefox, and asv then says "Perhaps web
   server has gone down". Here the page tries one such read itself and, when the browser refuses
   it, replaces the page by what to run instead. Browsers that allow it get asv's page as usual. */
(function () {
  if (window.location.protocol !== "file:") {
    return;
  }
  var explain = function () {
    var body = document.body;
    body.innerHTML =
      '<div id="perfmodel-file-notice" style="max-width: 46em; margin: 3em auto; ' +
      'font: 16px/1.5 sans-serif">' +
      "<h2>Open this site through a web server</h2>" +
      "<p>This page reads its results (<code>index.json</code>, <code>graphs/</code>) with " +
      "requests that the browser refuses for a page opened from a file. Nothing is wrong with " +
      "the site; serve the folder and open it over http:</p>" +
      "<pre style=\"background: #f4f4f4; padding: 0.8em\">asv preview" +
      "          # in the project's clone; open the address it prints\n" +
      "python3 -m http.server -d html 8080   # or any static server: " +
      "http://127.0.0.1:8080/</pre>" +
      '<p>The summary tables need no server: <a href="summary.html">summary.html</a>.</p>' +
      "</div>";
    document.title = "perfmodel: open through a web server";
  };
  var refused = function () {
    if (document.body) {
      explain();
    } else {
      document.addEventListener("DOMContentLoaded", explain);
    }
  };
  try {
    var probe = new XMLHttpRequest();
    probe.open("GET", "info.json");
    probe.onerror = refused;
    probe.onload = function () {
      if (!probe.responseText) {
        refused();
      }
    };
    probe.send();
  } catch (err) {
    refused();
  }
})();

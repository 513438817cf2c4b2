// The API docs page (visual_search/api_docs.html): Swagger UI over the schema named by #swagger-ui's
// data attributes. A file, not an inline script: a Content-Security-Policy of script-src 'self' allows it.
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  var data = root.dataset;
  SwaggerUIBundle({
    url: data.schemaUrl,
    dom_id: "#swagger-ui",
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    deepLinking: true,
    // Signed-in staff trying a POST: Django's CSRF check wants the token back in a header.
    requestInterceptor: function (request) {
      if (["GET", "HEAD", undefined].indexOf(request.method) < 0) {
        request.headers[data.csrfHeader] = data.csrfToken;
      }
      return request;
    }
  });
})();

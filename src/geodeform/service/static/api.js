/* The API documentation page: Swagger UI (vendored, no CDN) on this service's OpenAPI document.
 * URLs are relative to the page, so that the page works under a reverse proxy's path prefix. */
"use strict";
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: new URL("openapi.json", document.baseURI).href,
    dom_id: "#swagger-ui",
    deepLinking: true,
    persistAuthorization: false,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});

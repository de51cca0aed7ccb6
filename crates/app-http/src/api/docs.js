// Starts Swagger UI (swagger-ui-bundle.js, loaded before this file) over the operations API's
// document. No validator: it would send the document to validator.swagger.io.
"use strict";
window.ui = SwaggerUIBundle({
  url: "/api/v1/openapi.json",
  dom_id: "#swagger-ui",
  validatorUrl: null,
});

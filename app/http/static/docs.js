// The interactive API reference at /docs: Swagger UI (served from this server, never a CDN)
// on /openapi.json. The push channels are in /asyncapi.yaml.
globalThis.SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  tryItOutEnabled: true,
  validatorUrl: null, // no call to an online validator: the page works offline
});

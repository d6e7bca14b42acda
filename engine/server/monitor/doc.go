// Package monitor serves the Mirror Monitor web page: plain HTML, CSS and JavaScript embedded in the binary, so the page
// works on any member with no network access and no build step. The page is read-only and reads the same JSON the CLI
// prints (GET /api/v1/mirror/status and GET /api/v1/status) with relative URLs, so it works over http and https alike.
// The package owns only the assets and the handler that serves them; it must not compute any mirror state of its own
// (the server package owns the API and mounts this handler on the admin port, behind the same TLS rules as every request).
package monitor

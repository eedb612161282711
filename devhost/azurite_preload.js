// Loaded into Azurite by devhost/azurite.py (NODE_OPTIONS=--require). Azurite logs to a pipe the
// host reads; when the host is killed the pipe breaks, and Node turns the next log line into an
// uncaught EPIPE that ends Azurite before it saves its metadata (it saves every 5 s and on
// SIGTERM), losing the last writes it acknowledged. Storage must outlive the host, as in Azure:
// a broken log pipe only loses log lines.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", () => {});
}

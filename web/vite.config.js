import { readFileSync } from "node:fs";
import { defineConfig } from "vite";

// The Static Web App reads its config from the deployed folder, so dist/ carries a copy.
const staticWebAppConfig = {
  name: "slipway-staticwebapp-config",
  apply: "build",
  generateBundle() {
    this.emitFile({
      type: "asset",
      fileName: "staticwebapp.config.json",
      source: readFileSync(new URL("./staticwebapp.config.json", import.meta.url), "utf-8"),
    });
  },
};

export default defineConfig({
  // Relative asset URLs: dist/ works served at / by `slipway dev` and as a Static Web App.
  base: "./",
  plugins: [staticWebAppConfig],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    // Monaco is one large chunk by nature; it is cached by its content hash.
    chunkSizeWarningLimit: 4096,
  },
  worker: { format: "es" },
  server: {
    // `npm run dev --prefix web` next to `make dev`: the API stays on the runner.
    proxy: { "/api": "http://127.0.0.1:7071" },
  },
});

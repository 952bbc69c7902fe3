import { defineConfig } from 'vite';

// The dashboard is served by the binary at /_/ (crates/http/src/dashboard.rs embeds dist/).
// `npm run dev` proxies the API to a local `basalt serve` ($BASALT_URL, default http://127.0.0.1:8090).
export default defineConfig({
  base: '/_/',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  // The dev server's dependency scan reads JSX with its own options.
  optimizeDeps: { rolldownOptions: { transform: { jsx: { runtime: 'automatic', importSource: 'preact' } } } },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    reportCompressedSize: true,
  },
  server: { proxy: { '/api': process.env.BASALT_URL || 'http://127.0.0.1:8090' } },
});

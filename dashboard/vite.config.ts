/** The dashboard's build: `npm run build:dashboard` writes dist/dashboard/, served at /dashboard. */
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const here = fileURLToPath(new URL('.', import.meta.url));

export default defineConfig({
  root: here,
  base: '/dashboard/',
  // No public/ folder and no network at run time: everything the page needs is in the bundle.
  publicDir: false,
  build: {
    outDir: fileURLToPath(new URL('../dist/dashboard', import.meta.url)),
    emptyOutDir: true,
    assetsDir: 'assets',
    target: 'es2022',
    // A few small files; a module preload polyfill would only add bytes for old browsers.
    modulePreload: { polyfill: false },
    reportCompressedSize: false,
  },
});

/** Types of build.mjs (npm start's build step, plain JavaScript so it runs without tsx). */
/** The incremental compile's build info; its mtime marks the last good server build. */
export declare const BUILD_INFO: string;
/** The dashboard build's entry page; its mtime marks the last dashboard build. */
export declare const DASHBOARD_BUILT: string;
/** The bundled server's folder (dist/bundle) and the file `npm start` runs in it. */
export declare const BUNDLE_DIR: string;
export declare const BUNDLE_ENTRY: string;
/** Bundle inputs (the server's build info, the installed packages, build.mjs) newer than the bundle; all of them when there is none. */
export declare function staleBundleInputs(root: string): string[];
/** Bundles dist/src (tsc's output) into dist/bundle; resolves to esbuild's metafile. */
export declare function bundleServer(root: string): Promise<import('esbuild').Metafile>;
/** Bundles `entryPoints` (name -> file under `root`) into `outdir` the way `bundleServer` bundles the server. */
export declare function bundleNodeProgram(
  root: string,
  entryPoints: Record<string, string>,
  outdir: string,
  options?: { external?: string[]; plugins?: import('esbuild').Plugin[] },
): Promise<import('esbuild').Metafile>;
/** The unbundled compiled server, run when esbuild is not installed. */
export declare const UNBUNDLED_ENTRY: string;
/** Builds what is stale; a failed step ends the process. Resolves to the entry to run: the bundle, or the unbundled build without esbuild. */
export declare function buildStale(root: string): Promise<string>;
/** Files under `root` newer than the last good build (every input when there is none). */
export declare function staleInputs(root: string): string[];
/** Dashboard inputs newer than its last build (every input when there is none); generated code left out. */
export declare function staleDashboardInputs(root: string): string[];

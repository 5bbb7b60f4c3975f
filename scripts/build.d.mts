/** Types of build.mjs (npm start's build step, plain JavaScript so it runs without tsx). */
/** The incremental compile's build info; its mtime marks the last good server build. */
export declare const BUILD_INFO: string;
/** The dashboard build's entry page; its mtime marks the last dashboard build. */
export declare const DASHBOARD_BUILT: string;
/** Files under `root` newer than the last good build (every input when there is none). */
export declare function staleInputs(root: string): string[];
/** Dashboard inputs newer than its last build (every input when there is none); generated code left out. */
export declare function staleDashboardInputs(root: string): string[];

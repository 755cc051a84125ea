// Types of switchyard.js (tsc's declarations of src/).
export * from "./types/index.js";

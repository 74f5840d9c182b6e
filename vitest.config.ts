import { availableParallelism } from "node:os";
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: "forks",
    // At least two files at a time, also on 2 cores (vitest's default is one fewer than the cores): most integration
    // files spend much of their time waiting (for a token to expire, a lease to lapse, a process to start or exit),
    // and the tests that bound a time leave room for a loaded machine. `--maxWorkers=1` runs them one by one.
    maxWorkers: Math.max(2, availableParallelism() - 1),
    projects: [
      {
        extends: true,
        // The token logic on in-memory fakes and fake time: seconds in all (`npm run test:unit`).
        test: { name: "unit", include: ["test/unit/**/*.test.ts"] },
      },
      {
        extends: true,
        // Real servers, SQLite files, processes and clients.
        test: { name: "integration", include: ["test/*.test.ts"] },
      },
    ],
  },
});

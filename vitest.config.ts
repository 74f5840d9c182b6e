import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: "forks",
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

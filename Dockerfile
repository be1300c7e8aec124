# One image per deployable, all from this file. Build from the repository root:
#   docker build --build-arg WORKSPACE=services/gateway -t baton/gateway .
#   docker build --build-arg WORKSPACE=functions/generate-pdf --target function -t baton/fn-generate-pdf .
# skaffold.yaml and docker-compose.yml name every image with its WORKSPACE (and the `function`
# target for functions/*); NODE_IMAGE swaps the
# base (CI builds with a local stand-in, see scripts/images-test.js).
ARG NODE_IMAGE=node:22-slim

# --- manifests: package.json files only, so dependency layers survive source edits -------------
FROM ${NODE_IMAGE} AS manifests
WORKDIR /src
COPY . .
# Every workspace package.json listed in the root package.json (npm ci needs them all).
RUN mkdir -p /manifests && cp package.json package-lock.json /manifests/ \
 && node -e 'const fs = require("fs"), path = require("path"); \
      for (const ws of require("./package.json").workspaces) { \
        const dirs = ws.endsWith("/*") ? fs.readdirSync(ws.slice(0, -2)).map((d) => path.join(ws.slice(0, -2), d)) : [ws]; \
        for (const dir of dirs) { \
          const file = path.join(dir, "package.json"); \
          if (!fs.existsSync(file)) continue; \
          fs.mkdirSync(path.join("/manifests", dir), { recursive: true }); \
          fs.copyFileSync(file, path.join("/manifests", file)); \
        } \
      }'

# --- build: every dependency (the compiler included), then compile the workspace and its own ----
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY --from=manifests /manifests ./
# Install scripts stay off, as in the repository (package.json allowScripts): nothing here needs one.
RUN npm ci --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY . .
ARG WORKSPACE
# Each image gets its own code and the workspaces it depends on, nothing else: a service
# @baton/engine, @baton/workflow and the SDK under them; a function one esbuild bundle of itself, the SDK and their
# packages (the SDK's baton-bundle, sdk/src/bundle.ts says why), as dist/main.js. The coordinator image also runs
# the migration Job (node scripts/migrate.js) and ships the definitions it loads when no ConfigMap
# is mounted.
RUN test -n "${WORKSPACE}" || { echo "build arg WORKSPACE is required (e.g. functions/send-email)" >&2; exit 1; } \
 && test -f "${WORKSPACE}/package.json" || { echo "no workspace at ${WORKSPACE}" >&2; exit 1; } \
 && npx tsc -b "${WORKSPACE}" \
 && mkdir -p "/out/${WORKSPACE}" \
 && if [ "${WORKSPACE#functions/}" != "${WORKSPACE}" ]; then \
      node sdk/dist/bundle-cli.js "${WORKSPACE}" --out "/out/${WORKSPACE}/dist/main.js" \
      && cp "${WORKSPACE}/package.json" "/out/${WORKSPACE}/"; \
    else \
      for dir in $(node scripts/workspace-deps.js "${WORKSPACE}"); do \
        mkdir -p "/out/${dir}" && cp -r "${dir}/package.json" "${dir}/dist" "/out/${dir}/"; \
      done \
      && cp -r "${WORKSPACE}/package.json" "${WORKSPACE}/dist" "/out/${WORKSPACE}/"; \
    fi \
 && if [ -d "${WORKSPACE}/public" ]; then cp -r "${WORKSPACE}/public" "/out/${WORKSPACE}/"; fi \
 && if [ "${WORKSPACE}" = services/coordinator ]; then \
      mkdir -p /out/scripts && cp scripts/migrate.js /out/scripts/ && cp -r migrations seeds workflows /out/; \
    fi \
 && find /out -name '*.tsbuildinfo' -delete

# --- prod-deps: production dependencies of this workspace and the workspaces it uses, no more ----
FROM ${NODE_IMAGE} AS prod-deps
WORKDIR /src
COPY --from=manifests /manifests ./
ARG WORKSPACE
# A bundled function needs none, unless it keeps packages outside its bundle (package.json
# `baton.external`, e.g. generate-pdf's pdfkit): then its production dependencies, as a service.
RUN if [ "${WORKSPACE#functions/}" != "${WORKSPACE}" ] \
      && node -e 'process.exit(require(`./${process.argv[1]}/package.json`).baton?.external?.length ? 1 : 0)' "${WORKSPACE}"; then \
      mkdir -p node_modules; \
    else \
      npm ci --omit=dev --ignore-scripts --no-audit --no-fund --workspace "${WORKSPACE}" && npm cache clean --force; \
    fi
# npm installs such a function's production dependencies whole, the bundled ones too: only the
# external packages and what they need stay (the SDK's baton-bundle --prune-node-modules, read from
# package-lock.json): generate-pdf's node_modules 58 -> 25 MB. After the install, so its layer survives
# a source edit.
COPY --from=build /src/sdk/dist ./sdk/dist
RUN if [ "${WORKSPACE#functions/}" != "${WORKSPACE}" ]; then \
      node sdk/dist/bundle-cli.js "${WORKSPACE}" --prune-node-modules; \
    fi

# --- runtime: what both targets below share --------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
ARG WORKSPACE
ENV NODE_ENV=production
WORKDIR /app
COPY --from=prod-deps /src/node_modules ./node_modules
COPY --from=build /out ./
WORKDIR /app/${WORKSPACE}
# uid 1000 is `node` in the official image; numeric so Kubernetes' runAsNonRoot can verify it.
USER 1000:1000

# --- function: a step function's image (skaffold, compose and images:test build this target for
# functions/*) ------------------------------------------------------------------------------------
FROM runtime AS function
# node itself is PID 1 (no npm wrapper), so SIGTERM reaches the runtime's graceful stop. A function
# process mostly waits on its I/O and scales out on its backlog: V8 sized for memory rather than
# peak speed takes transform's idle RSS from 69 to 56 MB and its RSS after 1 000 jobs from 113 to
# 71 MB, for some CPU per job (`npm run bench -- --scenario function`, docs/PERFORMANCE.md). Not
# --single-threaded-gc: with the tree-shaken bundle it adds 3 MB idle and 7 MB after the jobs. A
# flag, not NODE_OPTIONS: node refuses it there.
# dist/start.js (the SDK's start script) runs the bundle with V8's code cache: written here, by the
# node and flags of the CMD (V8 takes a cache only from those), after the function has run its start
# for a moment against no Redis. transform's start to ready: about 300 -> 240 ms (docs/PERFORMANCE.md).
USER root
RUN node --optimize-for-size dist/start.js --write-code-cache
USER 1000:1000
CMD ["node", "--optimize-for-size", "dist/start.js"]

# --- service: the gateway and the coordinator (the default target) -----------------------------
FROM runtime AS service
# node itself is PID 1 (no npm wrapper), so SIGTERM reaches the runtime's graceful stop. Sized for a
# burst's peak, measured in alternation (docs/PERFORMANCE.md, issue 16), each with no throughput or
# CPU-per-step cost found: a young generation of at most 4 MB per semi-space (node's default is 16),
# 18-24 MB less per service; an old generation that grows by 30 % between full collections instead
# of V8's default (up to 4x), 18-25 MB less per service; two malloc arenas instead of glibc's eight
# per core for node's threads, 5-8 MB less in all. Not --optimize-for-size, as functions use: 10 MB
# less again per service, for 30-60 % more CPU per step in the coordinator. The bench starts the
# services with this ENV and the flags of this CMD (bench/lib/systems.js reads them here).
ENV MALLOC_ARENA_MAX=2
CMD ["node", "--max-semi-space-size=4", "--heap-growing-percent=30", "dist/main.js"]

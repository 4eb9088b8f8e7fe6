# syntax=docker/dockerfile:1
# Imagine: the bot, the playground and the shipped model in one image.
#   docker build -t imagine .
#   docker run -e DISCORD_TOKEN=... imagine                 # starts the Discord bot
#   docker run -p 3000:3000 imagine                          # no platform: the web playground
# GPU: docker build --build-arg ONNXRUNTIME_NODE_INSTALL=cuda12 -t imagine-gpu .
#      docker run --gpus all -e IMAGINE_EXECUTION_PROVIDERS=cuda,cpu ... imagine-gpu
#      (the CUDA 12 and cuDNN 9 runtime libraries must be visible to the container; see the README).

ARG NODE_IMAGE=node:20-slim

# ---- build: install production dependencies, compiling native modules (sqlite3) from source ----
FROM ${NODE_IMAGE} AS build
WORKDIR /app
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# skip keeps onnxruntime-node's bundled CPU binaries; cuda12 downloads the CUDA execution provider.
ARG ONNXRUNTIME_NODE_INSTALL=skip
ENV ONNXRUNTIME_NODE_INSTALL=${ONNXRUNTIME_NODE_INSTALL}
# The manifests and the project's .npmrc first, so that the dependency layer is cached.
COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev && npm cache clean --force

# ---- runtime: the same base, no compilers, a non-root user ----
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000 \
    DATA_DIR=/data
WORKDIR /app
COPY --from=build --chown=node:node /app/node_modules ./node_modules
COPY --chown=node:node package.json tsconfig.json ./
COPY --chown=node:node src ./src
COPY --chown=node:node commands ./commands
COPY --chown=node:node adapters ./adapters
COPY --chown=node:node bin ./bin
COPY --chown=node:node models ./models
RUN mkdir -p /data && chown node:node /data
VOLUME ["/data"]
USER node
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# package.json's start script, run directly so that node gets SIGTERM and shuts down gracefully.
CMD ["node", "--import", "tsx", "adapters/main.ts"]

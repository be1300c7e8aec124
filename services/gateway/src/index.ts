export { createApp, type AppDeps } from './app';
export { gatewayEnv, loadGatewayConfig, type GatewayConfig } from './config';

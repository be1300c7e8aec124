/**
 * Every Redis key and channel Baton names is built in the SDK (sdk/src/keys.ts), which function
 * processes share with the engine; re-exported here for the gateway and the coordinator.
 */
export {
  COORDINATOR_QUEUE,
  deadInboxShardKey,
  functionNameOfQueue,
  functionQueueName,
  inboxShardKey,
  inboxShardOf,
  redisKeys,
  type RedisKeys,
} from '@baton/sdk';

import type { StreamCredentials } from '../transfer/auth.ts';

/** This agent's part of the data stream (AgentConfig.stream with its identity). */
export interface DataStreamSettings {
  credentials: StreamCredentials;
  port: number;
  encrypt: boolean;
}

export * from './types.ts';
export * from './layer.ts';
export * from './layout.ts';

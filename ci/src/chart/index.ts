/** The Helm chart (deploy/helm/stella/): its model, its generated files, packaging, publishing. */
export * from './model.ts';
export * from './render.ts';
export * from './package.ts';
export * from './publish.ts';
export * from './function.ts';

/** The service catalog: types, data, derived views and validation. */
export * from './types.ts';
export { catalog, dependencyConfig, SOURCE_URL } from './catalog.ts';
export { configFor, serviceByName, selectServices } from './config.ts';
export { validateCatalog, assertValidCatalog } from './validate.ts';

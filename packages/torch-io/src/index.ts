export * from './tensor';

-- ctsync: primary database setup (SQL Server 2022). Run with sqlcmd; GO separates batches.
-- Creates database testct with Service Broker, snapshot isolation and change tracking, the
-- seed tables with change tracking on, and the DDL event queue ctsync listens on.
IF DB_ID(N'testct') IS NULL
    CREATE DATABASE testct;
GO
-- ENABLE_BROKER needs an exclusive lock on the database.
ALTER DATABASE testct SET ENABLE_BROKER WITH ROLLBACK IMMEDIATE;
GO
ALTER DATABASE testct SET ALLOW_SNAPSHOT_ISOLATION ON;
GO
IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_databases WHERE database_id = DB_ID(N'testct'))
    ALTER DATABASE testct SET CHANGE_TRACKING = ON (CHANGE_RETENTION = 2 DAYS, AUTO_CLEANUP = ON);
GO
USE testct;
GO
IF OBJECT_ID(N'dbo.[User]', N'U') IS NULL
    CREATE TABLE dbo.[User] (
        Id int IDENTITY(1, 1) NOT NULL CONSTRAINT PK_User PRIMARY KEY,
        Name nvarchar(100) NOT NULL,
        Email nvarchar(200) NULL,
        CreatedAt datetime2(3) NOT NULL CONSTRAINT DF_User_CreatedAt DEFAULT SYSUTCDATETIME()
    );
GO
IF OBJECT_ID(N'dbo.Customer', N'U') IS NULL
    CREATE TABLE dbo.Customer (
        Id int IDENTITY(1, 1) NOT NULL CONSTRAINT PK_Customer PRIMARY KEY,
        Name nvarchar(200) NOT NULL,
        Country char(2) NULL,
        Balance decimal(18, 2) NOT NULL CONSTRAINT DF_Customer_Balance DEFAULT 0,
        RowVer rowversion NOT NULL
    );
GO
IF OBJECT_ID(N'dbo.Product', N'U') IS NULL
    CREATE TABLE dbo.Product (
        Id int IDENTITY(1, 1) NOT NULL CONSTRAINT PK_Product PRIMARY KEY,
        Sku varchar(40) NOT NULL,
        Title nvarchar(200) NOT NULL,
        Description text NULL,
        Price money NOT NULL,
        Uid uniqueidentifier NOT NULL CONSTRAINT DF_Product_Uid DEFAULT NEWID(),
        PriceWithTax AS (Price * 1.2)
    );
GO
IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_tables WHERE object_id = OBJECT_ID(N'dbo.[User]'))
    ALTER TABLE dbo.[User] ENABLE CHANGE_TRACKING WITH (TRACK_COLUMNS_UPDATED = OFF);
GO
IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_tables WHERE object_id = OBJECT_ID(N'dbo.Customer'))
    ALTER TABLE dbo.Customer ENABLE CHANGE_TRACKING WITH (TRACK_COLUMNS_UPDATED = OFF);
GO
IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_tables WHERE object_id = OBJECT_ID(N'dbo.Product'))
    ALTER TABLE dbo.Product ENABLE CHANGE_TRACKING WITH (TRACK_COLUMNS_UPDATED = OFF);
GO
-- DDL events: table changes and renames go to SyncDDLQueue (contract names are http://, not https://).
IF OBJECT_ID(N'dbo.SyncDDLQueue', N'SQ') IS NULL
    CREATE QUEUE dbo.SyncDDLQueue;
GO
IF NOT EXISTS (SELECT 1 FROM sys.services WHERE name = N'SyncDDLService')
    CREATE SERVICE SyncDDLService ON QUEUE dbo.SyncDDLQueue ([http://schemas.microsoft.com/SQL/Notifications/PostEventNotification]);
GO
IF NOT EXISTS (SELECT 1 FROM sys.event_notifications WHERE name = N'SyncDDLNotification')
    CREATE EVENT NOTIFICATION SyncDDLNotification ON DATABASE FOR DDL_TABLE_EVENTS, RENAME TO SERVICE 'SyncDDLService', 'current database';
GO

-- ctsync's demo tables on the primary (SQL Server 2022), next to the original tool's
-- User/Customer/Product (sql/00-original-setup.sql). Idempotent: safe to run again.
-- Schema demo: every supported type, rowversion, computed columns, identity, a composite
-- key; snapshot isolation (recommended). Also creates the DDL queue and its notification
-- when the original setup has not (a database set up by hand without them).
IF DB_ID(N'testct') IS NULL
    CREATE DATABASE testct;
GO
IF NOT EXISTS (SELECT 1 FROM sys.databases WHERE name = N'testct' AND is_broker_enabled = 1)
    ALTER DATABASE testct SET ENABLE_BROKER WITH ROLLBACK IMMEDIATE;
GO
ALTER DATABASE testct SET ALLOW_SNAPSHOT_ISOLATION ON;
GO
IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_databases WHERE database_id = DB_ID(N'testct'))
    ALTER DATABASE testct SET CHANGE_TRACKING = ON (CHANGE_RETENTION = 2 DAYS, AUTO_CLEANUP = ON);
GO
USE testct;
GO
IF SCHEMA_ID(N'demo') IS NULL
    EXEC (N'CREATE SCHEMA demo');
GO
IF OBJECT_ID(N'demo.Customer', N'U') IS NULL
    CREATE TABLE demo.Customer (
        Id int IDENTITY(1, 1) NOT NULL CONSTRAINT PK_demo_Customer PRIMARY KEY,
        Name nvarchar(200) NOT NULL,
        Country char(2) NULL,
        Balance decimal(18, 2) NOT NULL CONSTRAINT DF_demo_Customer_Balance DEFAULT 0,
        RowVer rowversion NOT NULL
    );
GO
IF OBJECT_ID(N'demo.Product', N'U') IS NULL
    CREATE TABLE demo.Product (
        Id int IDENTITY(1, 1) NOT NULL CONSTRAINT PK_demo_Product PRIMARY KEY,
        Sku varchar(40) NOT NULL,
        Title nvarchar(200) NOT NULL,
        Description text NULL,
        Price money NOT NULL,
        Uid uniqueidentifier NOT NULL CONSTRAINT DF_demo_Product_Uid DEFAULT NEWID(),
        PriceWithTax AS (Price * 1.2)
    );
GO
IF OBJECT_ID(N'demo.OrderLine', N'U') IS NULL
    CREATE TABLE demo.OrderLine (
        OrderId int NOT NULL,
        Line smallint NOT NULL,
        Qty decimal(18, 4) NOT NULL,
        Note nvarchar(max) NULL,
        CONSTRAINT PK_demo_OrderLine PRIMARY KEY (OrderId, Line)
    );
GO
IF OBJECT_ID(N'demo.AllTypes', N'U') IS NULL
    CREATE TABLE demo.AllTypes (
        Id bigint NOT NULL CONSTRAINT PK_demo_AllTypes PRIMARY KEY,
        Flag bit NULL, Tiny tinyint NULL, Small smallint NULL, Big bigint NULL,
        Ratio real NULL, Precise float NULL, Amount decimal(38, 10) NULL, Price money NULL,
        Cheap smallmoney NULL, Title nvarchar(max) NULL, Code varchar(10) NULL,
        Fixed nchar(4) NULL, Blob varbinary(max) NULL, Bytes binary(4) NULL,
        Uid uniqueidentifier NULL, Day date NULL, At time(7) NULL, Stamp datetime2(3) NULL,
        Zoned datetimeoffset(7) NULL, Legacy datetime NULL, Minute smalldatetime NULL,
        Doc xml NULL, Notes ntext NULL, Picture image NULL
    );
GO
IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_tables WHERE object_id = OBJECT_ID(N'demo.Customer'))
    ALTER TABLE demo.Customer ENABLE CHANGE_TRACKING WITH (TRACK_COLUMNS_UPDATED = OFF);
GO
IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_tables WHERE object_id = OBJECT_ID(N'demo.Product'))
    ALTER TABLE demo.Product ENABLE CHANGE_TRACKING WITH (TRACK_COLUMNS_UPDATED = OFF);
GO
IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_tables WHERE object_id = OBJECT_ID(N'demo.OrderLine'))
    ALTER TABLE demo.OrderLine ENABLE CHANGE_TRACKING WITH (TRACK_COLUMNS_UPDATED = OFF);
GO
IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_tables WHERE object_id = OBJECT_ID(N'demo.AllTypes'))
    ALTER TABLE demo.AllTypes ENABLE CHANGE_TRACKING WITH (TRACK_COLUMNS_UPDATED = OFF);
GO
-- DDL events, for a primary set up without the original script: table changes and
-- renames go to SyncDDLQueue (contract names are http://, not https://). ctsync finds
-- the queue whatever its notification is named.
IF OBJECT_ID(N'dbo.SyncDDLQueue', N'SQ') IS NULL
    CREATE QUEUE dbo.SyncDDLQueue;
GO
IF NOT EXISTS (SELECT 1 FROM sys.services WHERE name = N'SyncDDLService')
    CREATE SERVICE SyncDDLService ON QUEUE dbo.SyncDDLQueue ([http://schemas.microsoft.com/SQL/Notifications/PostEventNotification]);
GO
IF NOT EXISTS (SELECT 1 FROM sys.event_notifications WHERE service_name = N'SyncDDLService')
    CREATE EVENT NOTIFICATION SyncDDLEvents ON DATABASE FOR DDL_TABLE_EVENTS, RENAME TO SERVICE 'SyncDDLService', 'current database';
GO
